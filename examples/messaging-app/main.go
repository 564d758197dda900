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
	"net/url"
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
	egress := fs.String("egress", "", "phiguard's egress listener (http://127.0.0.1:8081): the SMS carrier and push provider are called through it, as a forward proxy; none if empty")
	carrierURL := fs.String("carrier-url", "http://api.twilio.com", "the SMS carrier's base URL (Twilio's API)")
	account := fs.String("carrier-account", "ACdemo", "the app's account at the carrier; its auth token is read from $TWILIO_AUTH_TOKEN")
	smsFrom := fs.String("sms-from", "+15005550006", "the number the app texts from")
	pushURL := fs.String("push-url", "http://fcm.googleapis.com", "the push provider's base URL (FCM's HTTP v1 API)")
	project := fs.String("push-project", "demo-clinic", "the app's project at the push provider; its bearer token is read from $FCM_ACCESS_TOKEN")
	webhookSecretEnv := fs.String("webhook-secret-env", "PHIGUARD_WEBHOOK_SECRET", "the environment variable holding the secret phiguard signs the carrier's webhooks with (X-Phiguard-Signature)")
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
	a.WebhookSecret = []byte(os.Getenv(*webhookSecretEnv))
	if *egress != "" {
		proxy, err := url.Parse(*egress)
		if err != nil || proxy.Scheme != "http" || proxy.Host == "" {
			return fmt.Errorf("-egress: want http://HOST:PORT, got %q", *egress)
		}
		a.Outbound = &app.Outbound{
			Client:     &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}, Timeout: 30 * time.Second},
			CarrierURL: *carrierURL, Account: *account, AuthToken: os.Getenv("TWILIO_AUTH_TOKEN"), From: *smsFrom,
			PushURL: *pushURL, Project: *project, PushToken: os.Getenv("FCM_ACCESS_TOKEN"),
		}
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
