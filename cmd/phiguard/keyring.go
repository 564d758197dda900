package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
)

// providerFor builds the key providers the keys section names: the one
// that wraps new keysets first. Under the local provider, a configured
// keys.aws adds KMS (to rewrap to it). Under aws-kms, the master key is
// read only with keys.accept_local, and never for an org with its own KMS
// key: otherwise an old keyset file restored from a backup could take an
// org off KMS. observe, when not nil, is told of every KMS call.
func providerFor(ctx context.Context, k *policy.Keys, orgs []policy.Org, observe func(op string, took time.Duration, err error)) (keys.Provider, error) {
	own := make(map[string]string)
	for _, o := range orgs {
		if o.KMSKey != "" {
			own[o.ID] = o.KMSKey
		}
	}
	var remote keys.Provider
	if a := k.AWS; a != nil {
		client, err := keys.NewAWSKMSClient(ctx, keys.AWSOptions{Region: a.Region, Endpoint: a.Endpoint, MaxAttempts: a.MaxAttempts})
		if err != nil {
			return nil, err
		}
		remote = keys.NewKMSProvider(client, keys.KMSOptions{SharedKey: a.KMSKey, OrgKeys: own, PreviousKeys: a.PreviousKeys, CallTimeout: a.CallTimeout, Observe: observe})
	}
	if k.Provider == policy.ProviderAWSKMS {
		if !k.AcceptLocal {
			return remote, nil
		}
		local, err := openMaster(k)
		if err != nil {
			return nil, err
		}
		return keys.Providers{remote, notForOrgs{local, own}}, nil
	}
	local, err := openMaster(k)
	if err != nil {
		return nil, err
	}
	if remote != nil {
		return keys.Providers{local, remote}, nil
	}
	return local, nil
}

// notForOrgs is a provider that refuses the orgs in skip.
type notForOrgs struct {
	keys.Provider
	skip map[string]string
}

func (n notForOrgs) KEK(ctx context.Context, w keys.Wrap, org string) (tink.AEADWithContext, error) {
	if _, ok := n.skip[org]; ok && w.Provider == keys.ProviderLocal {
		return nil, fmt.Errorf("org %s has its own KMS key: a keyset of the master key is refused", org)
	}
	return n.Provider.KEK(ctx, w, org)
}

// openMaster reads the local master key: from PHIGUARD_MASTER_KEY when it
// is set, else from keys.master_key.
func openMaster(k *policy.Keys) (*keys.LocalProvider, error) {
	if p, ok, err := keys.OpenLocalEnv(); ok {
		return p, err
	}
	p, err := keys.OpenLocalFile(k.MasterKey)
	if err != nil && errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (run 'phiguard keys init -keyring %s', or set %s)", err, k.Keyring, keys.MasterKeyEnv)
	}
	return p, err
}

// openKeyring unwraps every keyset of the keyring, within keys.load_timeout.
func openKeyring(ctx context.Context, k *policy.Keys, orgs []policy.Org, observe func(string, time.Duration, error)) (*keys.Keyring, error) {
	ctx, cancel := context.WithTimeout(ctx, k.LoadTimeout)
	defer cancel()
	p, err := providerFor(ctx, k, orgs, observe)
	if err != nil {
		return nil, err
	}
	return keys.Open(ctx, k.Keyring, p)
}
