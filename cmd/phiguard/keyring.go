package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
)

// providerFor builds the key providers the keys section names: the one
// that wraps new keysets first, then the other if it is configured, so
// that a keyring moving between them reads both. observe, when not nil,
// is told of every KMS call.
func providerFor(ctx context.Context, k *policy.Keys, orgs []policy.Org, observe func(op string, took time.Duration, err error)) (keys.Provider, error) {
	local, localErr := openMaster(k)
	var remote keys.Provider
	if a := k.AWS; a != nil {
		client, err := keys.NewAWSKMSClient(ctx, keys.AWSOptions{Region: a.Region, Endpoint: a.Endpoint, MaxAttempts: a.MaxAttempts})
		if err != nil {
			return nil, err
		}
		own := make(map[string]string)
		for _, o := range orgs {
			if o.KMSKey != "" {
				own[o.ID] = o.KMSKey
			}
		}
		remote = keys.NewKMSProvider(client, keys.KMSOptions{SharedKey: a.KMSKey, OrgKeys: own, CallTimeout: a.CallTimeout, Observe: observe})
	}
	switch k.Provider {
	case policy.ProviderAWSKMS:
		ps := keys.Providers{remote}
		switch {
		case localErr == nil:
			ps = append(ps, local)
		case !errors.Is(localErr, fs.ErrNotExist):
			return nil, localErr // a master key that is there must open
		}
		return ps, nil
	default:
		if localErr != nil {
			return nil, localErr
		}
		ps := keys.Providers{local}
		if remote != nil {
			ps = append(ps, remote)
		}
		return ps, nil
	}
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
