// Command messaging-app runs the demo messaging API that phiguard protects.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/phiguard/phiguard/examples/messaging-app/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "messaging-app:", err)
		os.Exit(1)
	}
}

// run serves the app until ctx ends, then shuts down and closes the store.
func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("messaging-app", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	store := fs.String("store", "store.json", "file the app persists to (its search index goes beside it, with extension .db)")
	accessLog := fs.String("access-log", "", `file to append one line per request to ("-" for stderr); none if empty`)
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	a, err := app.New(*store)
	if err != nil {
		return err
	}
	defer a.Close()
	if *accessLog != "" {
		w, closeLog, err := openAccessLog(*accessLog)
		if err != nil {
			return err
		}
		defer closeLog()
		a.AccessLog = w
	}
	srv := &http.Server{Addr: *listen, Handler: a, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	log.Printf("messaging-app listening on %s, store %s", *listen, *store)
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// openAccessLog opens path for appending, or stderr for "-".
func openAccessLog(path string) (io.Writer, func() error, error) {
	if path == "-" {
		return os.Stderr, func() error { return nil }, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("access log: %w", err)
	}
	return f, f.Close, nil
}
