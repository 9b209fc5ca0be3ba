/* The program of the hello-c example: greets whoever NAME names and says which
   architecture it was compiled for (the compiler's own macros, so a cross-compiled
   binary says its target). */
#include <stdio.h>
#include <stdlib.h>

#if defined(__aarch64__)
#define ARCH "arm64"
#elif defined(__x86_64__)
#define ARCH "amd64"
#else
#define ARCH "an unknown architecture"
#endif

int main(void) {
    const char *name = getenv("NAME");
    printf("Hello, %s! from linux/%s\n", name ? name : "World", ARCH);
    return 0;
}
