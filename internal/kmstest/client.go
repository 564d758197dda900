package kmstest

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// MaxBackoff caps the delay between attempts of Retryer.
const MaxBackoff = 5 * time.Millisecond

// Retryer returns the SDK's standard retryer (the one real clients use:
// same retryable errors, throttling included) with maxAttempts attempts
// (≤ 0: the SDK default, 3), backoff capped at MaxBackoff, and no
// client-side retry quota, so that retry tests run fast and alike every
// time.
func Retryer(maxAttempts int) aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = maxAttempts
		o.MaxBackoff = MaxBackoff
		o.RateLimiter = ratelimit.None
	})
}

// Client returns a real SDK KMS client for the server: its region, static
// credentials (AKIDTEST), BaseEndpoint URL(), an HTTP client that dials
// loopback addresses only and ignores proxy settings, and Retryer(3).
// Nothing is read from the environment or shared config files. optFns
// change the options after that, for example:
//
//	func(o *kms.Options) { o.RetryMaxAttempts = 5 }
//	func(o *kms.Options) { o.Retryer = aws.NopRetryer{} }
//
// Its idle connections are closed when t's test ends.
func (s *Server) Client(t testing.TB, optFns ...func(*kms.Options)) *kms.Client {
	t.Helper()
	hc := LoopbackHTTPClient()
	t.Cleanup(hc.CloseIdleConnections)
	return kms.New(kms.Options{
		Region:       s.Region(),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "SECRET", ""),
		BaseEndpoint: aws.String(s.URL()),
		HTTPClient:   hc,
		Retryer:      Retryer(retry.DefaultMaxAttempts),
	}, optFns...)
}

// ConfigOptions are options for config.LoadDefaultConfig that make a
// client of the server: its region, static credentials (AKIDTEST), no
// shared config or credentials files, and an HTTP client that dials
// loopback addresses only and uses no proxy (an SDK BuildableClient, so
// that settings such as AWS_CA_BUNDLE can still be applied to it; its
// connections end when the server closes). They do not set the endpoint, so that a test of code that takes
// an endpoint setting still proves it is used: give it URL(), or add
// config.WithBaseEndpoint(s.URL()). Environment variables the SDK reads
// for settings not given here (AWS_MAX_ATTEMPTS, AWS_ENDPOINT_URL_KMS, …)
// still apply, as they do to any LoadDefaultConfig; and AWS_PROFILE, if set,
// makes LoadDefaultConfig fail, since the SDK insists that a profile named
// there exist (t.Setenv("AWS_PROFILE", "") avoids it). Client has none of
// these caveats.
func (s *Server) ConfigOptions() []func(*config.LoadOptions) error {
	hc := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Control = onlyLoopback }).
		WithTransportOptions(func(tr *http.Transport) { tr.Proxy = nil })
	return []func(*config.LoadOptions) error{
		config.WithRegion(s.Region()),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIDTEST", "SECRET", "")),
		config.WithSharedConfigFiles([]string{}),
		config.WithSharedCredentialsFiles([]string{}),
		config.WithHTTPClient(hc),
	}
}

// LoopbackHTTPClient returns an HTTP client that refuses to connect to any
// address but a loopback one and uses no proxy.
func LoopbackHTTPClient() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, Control: onlyLoopback}
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         d.DialContext,
		MaxIdleConnsPerHost: 16,
	}}
}

// onlyLoopback is a net.Dialer Control: it runs before connecting, once the
// address is resolved.
func onlyLoopback(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("kmstest: dial %s: %w", address, err)
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		return fmt.Errorf("kmstest: refusing to dial %s: only loopback addresses are allowed", address)
	}
	return nil
}
