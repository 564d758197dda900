// Package redisclient makes the go-redis clients phiguard's shared
// stores (sessions, consent) use: every command bounded, one retry on a
// dropped pooled connection, then an error the caller refuses on.
package redisclient

import (
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options name a Redis server and how long to wait for it.
type Options struct {
	// URL is redis://[user@]host:port/db, or rediss:// for TLS checked
	// against the system's roots.
	URL string
	// Password, when set, overrides the URL's.
	Password string
	// Prefix starts every key. Default "phiguard:".
	Prefix string
	// Timeout bounds each command, connecting included. Default 250ms.
	Timeout time.Duration
}

// Defaults of Options.
const (
	DefaultTimeout = 250 * time.Millisecond
	DefaultPrefix  = "phiguard:"
)

// New returns a client of the server o names, and the key prefix. It
// does not connect until first used.
func New(o Options) (*redis.Client, string, error) {
	opt, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, "", fmt.Errorf("redis url: %w", err)
	}
	if o.Password != "" {
		opt.Password = o.Password
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = o.Timeout, o.Timeout, o.Timeout
	opt.PoolTimeout = o.Timeout
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = 1 // one retry on a dropped pooled connection, then fail closed
	opt.DialerRetries = 1
	opt.DisableIdentity = true
	return redis.NewClient(opt), o.Prefix, nil
}
