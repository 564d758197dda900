// Command messaging-app runs the demo messaging API that phiguard protects.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/phiguard/phiguard/examples/messaging-app/app"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	store := flag.String("store", "store.json", "file the app persists to")
	flag.Parse()
	a, err := app.New(*store)
	if err != nil {
		fmt.Fprintln(os.Stderr, "messaging-app:", err)
		os.Exit(1)
	}
	srv := &http.Server{Addr: *listen, Handler: a, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("messaging-app listening on %s, store %s", *listen, *store)
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "messaging-app:", err)
		os.Exit(1)
	}
}
