package keys

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// KMSAPI is the part of the AWS KMS client phiguard uses; *kms.Client
// has it.
type KMSAPI interface {
	Encrypt(ctx context.Context, in *kms.EncryptInput, optFns ...func(*kms.Options)) (*kms.EncryptOutput, error)
	Decrypt(ctx context.Context, in *kms.DecryptInput, optFns ...func(*kms.Options)) (*kms.DecryptOutput, error)
	ScheduleKeyDeletion(ctx context.Context, in *kms.ScheduleKeyDeletionInput, optFns ...func(*kms.Options)) (*kms.ScheduleKeyDeletionOutput, error)
}

// KMSOptions configure a KMSProvider.
type KMSOptions struct {
	// SharedKey wraps the keyset of every org without a key in OrgKeys: a
	// key ARN, key id, alias/NAME or alias ARN.
	SharedKey string
	// OrgKeys are the orgs' own KMS keys.
	OrgKeys map[string]string
	// PreviousKeys may still wrap keysets while they move to their new
	// key (rewrap); a keyset wrapped by any other key is refused, so that a
	// keyset file cannot name a key of its own choosing.
	PreviousKeys []string
	// CallTimeout bounds one KMS call, the SDK's retries included; 0
	// means no bound beyond the caller's context.
	CallTimeout time.Duration
	// Observe, when set, is told of every KMS call: the operation
	// (Encrypt, Decrypt), how long it took, retries included, and its
	// error. It is called from several goroutines at once (keysets load
	// in parallel) and must not keep err.
	Observe func(op string, took time.Duration, err error)
}

// KMSProvider wraps each organization's keyset under an AWS KMS key with
// envelope encryption: Tink makes a fresh AES-256-GCM key per write, which
// wraps the keyset (with the file's associated data), and KMS encrypts that
// key under the org's KMS key with the encryption context {"org": ID}.
// KMS is called when a keyset is written or loaded, never per request.
type KMSProvider struct {
	client KMSAPI
	opts   KMSOptions
}

var _ Provider = (*KMSProvider)(nil)

// NewKMSProvider uses client for the KMS calls.
func NewKMSProvider(client KMSAPI, o KMSOptions) *KMSProvider {
	return &KMSProvider{client: client, opts: o}
}

// WrapFor is org's own key, or the shared one.
func (p *KMSProvider) WrapFor(org string) (Wrap, error) {
	key := p.opts.OrgKeys[org]
	if key == "" {
		key = p.opts.SharedKey
	}
	if key == "" {
		return Wrap{}, fmt.Errorf("org %s has no kms_key and keys.aws.kms_key is not set", org)
	}
	return Wrap{Provider: ProviderAWSKMS, Key: key}, nil
}

// KEK returns the envelope AEAD for w's KMS key and org.
func (p *KMSProvider) KEK(_ context.Context, w Wrap, org string) (tink.AEADWithContext, error) {
	if w.Provider != ProviderAWSKMS {
		return nil, errOtherProvider{want: ProviderAWSKMS, got: w.Provider}
	}
	if w.Key == "" {
		return nil, errors.New("keyset file names no KMS key")
	}
	if !p.allowed(org, w.Key) {
		return nil, fmt.Errorf("KMS key %s is not one the policy allows for org %s (its kms_key, or keys.aws.kms_key for orgs without one, or keys.aws.previous_keys): %w", w.Key, org, ErrKMSKeyUnusable)
	}
	remote := &kmsKEK{p: p, key: w.Key, context: map[string]string{"org": org}}
	env, err := aead.NewKMSEnvelopeAEADWithContext(aead.AES256GCMKeyTemplate(), remote)
	if err != nil {
		return nil, err
	}
	return &kmsEnvelope{env, remote}, nil
}

// kmsEnvelope is Tink's envelope AEAD over a KMS key, which also keeps the
// last KMS error: Tink reports a failed unwrap as text, and the caller
// needs to know whether the key was unusable or KMS unavailable.
type kmsEnvelope struct {
	*aead.KMSEnvelopeAEADWithContext
	remote *kmsKEK
}

func (e *kmsEnvelope) cause() error {
	if p := e.remote.err.Load(); p != nil {
		return *p
	}
	return nil
}

// kmsKEK encrypts and decrypts envelope keys with one KMS key and one
// encryption context.
type kmsKEK struct {
	p       *KMSProvider
	key     string
	context map[string]string
	err     atomic.Pointer[error] // the last call's error, classified
}

func (k *kmsKEK) fail(err error) error {
	k.err.Store(&err)
	return err
}

var _ tink.AEADWithContext = (*kmsKEK)(nil)

func (k *kmsKEK) EncryptWithContext(ctx context.Context, pt, ad []byte) ([]byte, error) {
	if len(ad) > 0 {
		return nil, errors.New("aws kms: associated data is bound by the encryption context, not passed")
	}
	ctx, cancel := k.p.bound(ctx)
	defer cancel()
	start := time.Now()
	out, err := k.p.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(k.key), Plaintext: pt, EncryptionContext: k.context})
	k.p.observe("Encrypt", start, err)
	if err != nil {
		return nil, k.fail(kmsError("Encrypt", k.key, err))
	}
	return out.CiphertextBlob, nil
}

func (k *kmsKEK) DecryptWithContext(ctx context.Context, ct, ad []byte) ([]byte, error) {
	if len(ad) > 0 {
		return nil, errors.New("aws kms: associated data is bound by the encryption context, not passed")
	}
	ctx, cancel := k.p.bound(ctx)
	defer cancel()
	start := time.Now()
	// The key is named: KMS refuses a blob of another key instead of
	// using whatever key the blob names.
	out, err := k.p.client.Decrypt(ctx, &kms.DecryptInput{KeyId: aws.String(k.key), CiphertextBlob: ct, EncryptionContext: k.context})
	k.p.observe("Decrypt", start, err)
	if err != nil {
		return nil, k.fail(kmsError("Decrypt", k.key, err))
	}
	return out.Plaintext, nil
}

// allowed reports whether key may wrap org's keyset: the org's own key
// (or the shared key, for an org without one), or a previous key.
func (p *KMSProvider) allowed(org, key string) bool {
	want := p.opts.OrgKeys[org]
	if want == "" {
		want = p.opts.SharedKey
	}
	return key == want || slices.Contains(p.opts.PreviousKeys, key)
}

// OwnKey returns org's own KMS key, if it has one.
func (p *KMSProvider) OwnKey(org string) (string, bool) {
	k, ok := p.opts.OrgKeys[org]
	return k, ok && k != ""
}

// ScheduleDeletion schedules the deletion of KMS key key after days (7 to
// 30): what it wrapped can never be unwrapped once it is gone. It returns
// when the key will be deleted.
func (p *KMSProvider) ScheduleDeletion(ctx context.Context, key string, days int32) (time.Time, error) {
	ctx, cancel := p.bound(ctx)
	defer cancel()
	start := time.Now()
	out, err := p.client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(key), PendingWindowInDays: aws.Int32(days)})
	p.observe("ScheduleKeyDeletion", start, err)
	if err != nil {
		return time.Time{}, kmsError("ScheduleKeyDeletion", key, err)
	}
	return aws.ToTime(out.DeletionDate), nil
}

func (p *KMSProvider) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if p.opts.CallTimeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, p.opts.CallTimeout)
}

func (p *KMSProvider) observe(op string, start time.Time, err error) {
	if p.opts.Observe != nil {
		p.opts.Observe(op, time.Since(start), err)
	}
}

// Errors a KMS call may end with, as errors.Is sees them.
var (
	// ErrKMSKeyUnusable: the key is disabled, pending deletion or gone,
	// or the caller may not use it.
	ErrKMSKeyUnusable = errors.New("the KMS key cannot be used")
	// ErrKMSContext: KMS refused the ciphertext: another key's, another
	// org's encryption context, or tampered.
	ErrKMSContext = errors.New("KMS refused the wrapped key: another key, another org, or tampered")
	// ErrKMSUnavailable: KMS did not answer in time, or kept refusing for
	// load (throttling, 5xx) until the retries ran out.
	ErrKMSUnavailable = errors.New("KMS unavailable")
)

// kmsError classifies err, keeping it for the log.
func kmsError(op, key string, err error) error {
	kind := ErrKMSUnavailable
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "DisabledException", "KMSInvalidStateException", "NotFoundException", "AccessDeniedException",
			"KeyUnavailableException", "InvalidKeyUsageException", "InvalidArnException":
			kind = ErrKMSKeyUnusable
		case "InvalidCiphertextException", "IncorrectKeyException":
			kind = ErrKMSContext
		}
	}
	return fmt.Errorf("aws kms %s with %s: %w: %w", op, key, kind, err)
}

// AWSOptions configure the AWS SDK client of a KMS provider.
type AWSOptions struct {
	// Region; empty means the SDK's (AWS_REGION, shared config).
	Region string
	// Endpoint overrides the KMS endpoint (a VPC endpoint, a test server).
	Endpoint string
	// MaxAttempts bounds the tries of one call on throttling and 5xx.
	MaxAttempts int
	// MaxBackoff bounds the wait between tries; 0 means 2s.
	MaxBackoff time.Duration
	// ConfigOptions are passed to config.LoadDefaultConfig after the
	// above (tests give static credentials and a loopback-only client).
	ConfigOptions []func(*config.LoadOptions) error
}

// NewAWSKMSClient builds a KMS client from the SDK's standard
// configuration chain (environment, shared config and credentials files,
// web identity as IRSA sets it up in Kubernetes, instance roles), with
// the retries and endpoint of o.
func NewAWSKMSClient(ctx context.Context, o AWSOptions) (*kms.Client, error) {
	backoff := o.MaxBackoff
	if backoff <= 0 {
		backoff = 2 * time.Second
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				if o.MaxAttempts > 0 {
					so.MaxAttempts = o.MaxAttempts
				}
				so.MaxBackoff = backoff
			})
		}),
	}
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	opts = append(opts, o.ConfigOptions...)
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("aws kms: no region: set keys.aws.region or AWS_REGION")
	}
	return kms.NewFromConfig(cfg, func(ko *kms.Options) {
		if o.Endpoint != "" {
			ko.BaseEndpoint = aws.String(o.Endpoint)
		}
	}), nil
}
