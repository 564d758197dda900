package keys

import (
	"context"
	"fmt"

	"github.com/tink-crypto/tink-go/v2/tink"
)

// Key providers, as a keyset file names them.
const (
	ProviderLocal  = "local"
	ProviderAWSKMS = "aws-kms"
)

// Wrap names the key-encryption key that wraps one organization's keyset:
// the provider, and for a KMS the key.
type Wrap struct {
	Provider string `json:"provider"`
	Key      string `json:"key,omitempty"`
}

func (w Wrap) String() string {
	if w.Key == "" {
		return w.Provider
	}
	return w.Provider + " " + w.Key
}

// Provider hands out key-encryption keys. The local provider has one
// master key for every org; a KMS provider wraps each org's keyset under a
// KMS key, with the org in the encryption context.
type Provider interface {
	// WrapFor says what wraps org's keyset when it is written.
	WrapFor(org string) (Wrap, error)
	// KEK returns the AEAD of w for org's keyset. It fails for a w of
	// another provider.
	KEK(ctx context.Context, w Wrap, org string) (tink.AEADWithContext, error)
}

// Providers joins providers into one: new keysets are wrapped by the
// first, and a keyset is unwrapped by the provider its file names, so a
// keyring moving from one provider to another reads both meanwhile.
type Providers []Provider

var _ Provider = Providers(nil)

// WrapFor asks the first provider.
func (ps Providers) WrapFor(org string) (Wrap, error) {
	if len(ps) == 0 {
		return Wrap{}, fmt.Errorf("no key provider is configured")
	}
	return ps[0].WrapFor(org)
}

// KEK asks each provider in turn for the one that knows w.
func (ps Providers) KEK(ctx context.Context, w Wrap, org string) (tink.AEADWithContext, error) {
	for _, p := range ps {
		if a, err := p.KEK(ctx, w, org); err == nil {
			return a, nil
		} else if !isOtherProvider(err) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("keyset wrapped by %s, and no provider configured here has that key", w)
}

// errOtherProvider is a KEK's answer for a Wrap of another provider.
type errOtherProvider struct{ want, got string }

func (e errOtherProvider) Error() string {
	return fmt.Sprintf("keyset wrapped by %s, not %s", e.got, e.want)
}

func isOtherProvider(err error) bool {
	_, ok := err.(errOtherProvider)
	return ok
}

// withoutContext lets a tink.AEAD serve where an AEADWithContext is asked
// for: a local key needs no context.
type withoutContext struct{ a tink.AEAD }

func (w withoutContext) EncryptWithContext(_ context.Context, pt, ad []byte) ([]byte, error) {
	return w.a.Encrypt(pt, ad)
}

func (w withoutContext) DecryptWithContext(_ context.Context, ct, ad []byte) ([]byte, error) {
	return w.a.Decrypt(ct, ad)
}
