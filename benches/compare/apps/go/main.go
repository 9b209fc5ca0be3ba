// A small HTTP server for rbuild's benchmarks: standard library only.
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"
)

var started = time.Now()

func main() {
	name := os.Getenv("NAME")
	if name == "" {
		name = "World"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "Hello %s!\n", name)
	})
	http.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"ok": true, "uptime": time.Since(started).Seconds()})
	})
	log.Fatal(http.ListenAndServe(":8080", nil))
}
