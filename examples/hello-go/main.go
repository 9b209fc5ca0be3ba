// The program of the hello-go example: an HTTP server, standard library only, that
// greets whoever NAME names and says which platform it was built for.
//
//	hello-go              serves on :8080 (or $PORT) until stopped
//	hello-go -self-check  serves on a loopback port, fetches "/" from itself once,
//	                      prints the reply and exits: 0 when it was 200 OK
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
)

// greeting answers every path with the greeting and the platform the binary was built for.
func greeting(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "Hello, %s! from %s/%s\n", name, runtime.GOOS, runtime.GOARCH)
	})
}

// selfCheck serves handler on an ephemeral loopback port, fetches "/" from it once over
// HTTP and prints the reply.
func selfCheck(handler http.Handler) error {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening on a loopback port: %w", err)
	}
	server := &http.Server{Handler: handler}
	go server.Serve(listener)
	defer server.Close()

	url := "http://" + listener.Addr().String() + "/"
	resp, err := http.Get(url)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading the reply of %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	fmt.Print(string(body))
	return nil
}

func main() {
	check := flag.Bool("self-check", false, "serve on a loopback port, fetch / once, print the reply and exit")
	flag.Parse()

	name := os.Getenv("NAME")
	if name == "" {
		name = "World"
	}
	handler := greeting(name)
	if *check {
		if err := selfCheck(handler); err != nil {
			log.Fatalf("self-check: %v", err)
		}
		return
	}
	addr := ":" + os.Getenv("PORT")
	if addr == ":" {
		addr = ":8080"
	}
	log.Printf("serving on %s", addr)
	log.Fatal(http.ListenAndServe(addr, handler))
}
