/* The program of the hello-c example: greets whoever NAME names. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    const char *name = getenv("NAME");
    printf("Hello, %s!\n", name ? name : "World");
    return 0;
}
