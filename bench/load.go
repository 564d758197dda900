package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// requestTimeout bounds one request, so a stuck proxy cannot hang a run.
const requestTimeout = 30 * time.Second

// newClient speaks HTTP/1.1 with keep-alive over at most conns connections
// (0: no limit), or, with h2, HTTP/2 with prior knowledge (h2c).
func newClient(h2 bool, conns int) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        max(conns, 512),
		MaxIdleConnsPerHost: max(conns, 512),
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     5 * time.Minute,
		DisableCompression:  true,
		Protocols:           new(http.Protocols),
	}
	if h2 {
		tr.Protocols.SetUnencryptedHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	return &http.Client{Transport: tr, Timeout: requestTimeout}
}

// loadResult is what one load phase saw from the client side.
type loadResult struct {
	requests int // completed, errors included
	errors   int
	firstErr string
	elapsed  time.Duration
	lat      []time.Duration // sorted; successful requests only
}

func (r loadResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// percentile of the sorted latencies, by nearest rank.
func (r loadResult) percentile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(r.lat)))) - 1
	return r.lat[min(max(i, 0), len(r.lat)-1)]
}

// shot sends one request of w and reads the whole answer. Anything but a
// 2xx status is an error.
func shot(ctx context.Context, client *http.Client, base string, w *workload, auth string) error {
	var body io.Reader
	if w.body != nil {
		body = bytes.NewReader(w.body)
	}
	req, err := http.NewRequestWithContext(ctx, w.method, base+w.path, body)
	if err != nil {
		return err
	}
	req.Header["Authorization"] = []string{auth}
	req.Header["Accept"] = []string{"application/json"}
	if w.body != nil {
		req.Header["Content-Type"] = []string{"application/json"}
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// worker is one closed-loop connection's record.
type worker struct {
	lat      []time.Duration
	errors   int
	firstErr string
}

// closedLoop keeps conns requests in flight for d: each worker sends its
// next request as soon as the previous one is answered. Requests still in
// flight at the deadline are waited for and counted.
func closedLoop(ctx context.Context, client *http.Client, base string, w *workload, auths []string, conns int, d time.Duration) loadResult {
	workers := make([]worker, conns)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for i := range workers {
		wg.Go(func() {
			wk := &workers[i]
			wk.lat = make([]time.Duration, 0, 1024)
			for n := i; ctx.Err() == nil; n += conns { // users spread over workers
				t0 := time.Now()
				if !t0.Before(deadline) {
					return
				}
				if err := shot(ctx, client, base, w, auths[n%len(auths)]); err != nil {
					if wk.errors == 0 {
						wk.firstErr = err.Error()
					}
					wk.errors++
					continue
				}
				wk.lat = append(wk.lat, time.Since(t0))
			}
		})
	}
	wg.Wait()
	r := loadResult{elapsed: time.Since(start)}
	for _, wk := range workers {
		r.requests += len(wk.lat) + wk.errors
		r.errors += wk.errors
		if r.firstErr == "" {
			r.firstErr = wk.firstErr
		}
		r.lat = append(r.lat, wk.lat...)
	}
	slices.Sort(r.lat)
	return r
}

// openLoop sends rate requests a second for d on a fixed schedule, whether
// or not earlier ones were answered, and measures each from its scheduled
// time: a proxy that falls behind shows it in its latency instead of
// slowing the generator down (no coordinated omission).
func openLoop(ctx context.Context, client *http.Client, base string, w *workload, auths []string, rate int, d time.Duration) loadResult {
	n := max(int(float64(rate)*d.Seconds()), 1)
	interval := time.Second / time.Duration(rate)
	lat := make([]time.Duration, n)
	ok := make([]bool, n)
	var errs atomic.Int64
	var firstErr atomic.Pointer[string]
	var wg sync.WaitGroup
	start := time.Now().Add(5 * time.Millisecond)
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			n = i
			break
		}
		wg.Go(func() {
			if err := shot(ctx, client, base, w, auths[i%len(auths)]); err != nil {
				errs.Add(1)
				msg := err.Error()
				firstErr.CompareAndSwap(nil, &msg)
				return
			}
			lat[i], ok[i] = time.Since(at), true
		})
	}
	wg.Wait()
	r := loadResult{requests: n, errors: int(errs.Load()), elapsed: time.Since(start)}
	if p := firstErr.Load(); p != nil {
		r.firstErr = *p
	}
	for i := range n {
		if ok[i] {
			r.lat = append(r.lat, lat[i])
		}
	}
	slices.Sort(r.lat)
	return r
}
