package identity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/tink-crypto/tink-go/v2/subtle"
)

// Defaults of a JWKS URL.
const (
	DefaultJWKSRefresh     = 10 * time.Minute
	DefaultJWKSMinInterval = 30 * time.Second
	// maxJWKSBytes bounds a fetched key set.
	maxJWKSBytes = 1 << 20
	// jwksFetchTimeout bounds one fetch; a request waiting on a fetch for
	// an unknown kid waits no longer.
	jwksFetchTimeout = 5 * time.Second
)

// jwksSource fetches a key set from its URL: at start, every refresh,
// and when a token names a kid the set does not have, but never more
// often than minInterval (so a flood of made-up kids costs one fetch per
// interval). A fetch that fails keeps the last good set.
type jwksSource struct {
	url         string
	client      *http.Client
	refresh     time.Duration
	minInterval time.Duration
	onError     func(error)

	mu       sync.Mutex
	demanded time.Time     // when the last fetch for an unknown kid began
	inflight chan struct{} // closed when the fetch in flight ends
	digest   string        // of the set in force
	fetches  int           // fetches begun, for tests
}

// NewVerifierFromURL fetches the key set at cfg.JWKSURL and returns a
// verifier that keeps it current (Run refreshes it on schedule; an
// unknown kid fetches it at once, rate-limited). The first fetch must
// succeed.
func NewVerifierFromURL(ctx context.Context, cfg Config) (*Verifier, error) {
	src := &jwksSource{url: cfg.JWKSURL, client: cfg.JWKSClient, refresh: cfg.JWKSRefresh, minInterval: cfg.JWKSMinInterval, onError: cfg.OnJWKSError}
	if src.client == nil {
		src.client = &http.Client{Timeout: jwksFetchTimeout}
	}
	if src.refresh <= 0 {
		src.refresh = DefaultJWKSRefresh
	}
	if src.minInterval <= 0 {
		src.minInterval = DefaultJWKSMinInterval
	}
	if src.onError == nil {
		src.onError = func(error) {}
	}
	raw, err := src.get(ctx)
	if err != nil {
		return nil, err
	}
	v, err := NewVerifierFromJWKS(cfg, raw)
	if err != nil {
		return nil, err
	}
	src.digest = digestOf(raw)
	v.src = src
	return v, nil
}

// Run refreshes the key set every refresh interval until ctx ends. A
// verifier made from a file returns at once.
func (v *Verifier) Run(ctx context.Context) {
	if v.src == nil {
		return
	}
	t := time.NewTicker(v.src.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			v.fetch(ctx, true)
		}
	}
}

// fetch gets the key set and puts it in force if it changed. Unless
// scheduled, it does nothing when a fetch for an unknown kid began less
// than minInterval ago, and it joins a fetch in flight rather than start
// another. It
// returns once the fetch it started or joined has ended.
func (v *Verifier) fetch(ctx context.Context, scheduled bool) {
	s := v.src
	s.mu.Lock()
	if wait := s.inflight; wait != nil {
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
		}
		return
	}
	if !scheduled {
		now := v.cfg.Now()
		if !s.demanded.IsZero() && now.Sub(s.demanded) < s.minInterval {
			s.mu.Unlock()
			return
		}
		s.demanded = now
	}
	s.inflight = make(chan struct{})
	s.fetches++
	done := s.inflight
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inflight = nil
		s.mu.Unlock()
		close(done)
	}()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksFetchTimeout)
	defer cancel()
	raw, err := s.get(ctx)
	if err != nil {
		s.onError(err)
		return
	}
	if d := digestOf(raw); d != s.digest {
		if err := v.SetKeySet(raw); err != nil {
			s.onError(err)
			return
		}
		s.digest = d
	}
}

// get fetches the key set's bytes.
func (s *jwksSource) get(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("JWKS URL: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS: %s answered %d", s.url, resp.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	if len(raw) > maxJWKSBytes {
		return nil, errors.New("fetch JWKS: the key set is larger than 1 MiB")
	}
	if _, err := newKeySet(raw); err != nil {
		return nil, fmt.Errorf("JWKS from %s: %w", s.url, err)
	}
	return raw, nil
}

// Fetches says how many fetches of the JWKS URL began; 0 for a file.
func (v *Verifier) Fetches() int {
	if v.src == nil {
		return 0
	}
	v.src.mu.Lock()
	defer v.src.mu.Unlock()
	return v.src.fetches
}

func digestOf(raw []byte) string {
	sum, _ := subtle.ComputeHash(subtle.GetHashFunc("SHA256"), raw)
	return string(sum)
}
