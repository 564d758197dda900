package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/policy"
)

// checkKeys opens the keyring the policy names, as serve would (every
// keyset unwrapped, with the KMS when the provider is aws-kms), and
// reports each listed org: keys that open, or what is missing. It is
// what serve finds out at start, found before a deploy. A problem is an
// error (errReported); a shredded org is a note: its PHI is refused for
// good, on purpose.
func checkKeys(ctx context.Context, pol *policy.Policy, stdout, stderr io.Writer) error {
	k := pol.File.Keys
	if k == nil {
		return usageError{"-keys: the policy has no keys section"}
	}
	ctx, cancel := context.WithTimeout(ctx, k.LoadTimeout)
	defer cancel()
	p, err := providerFor(ctx, k, pol.File.Orgs, nil)
	if err != nil {
		fmt.Fprintf(stderr, "keys: %v\n", err)
		return errReported
	}
	ring, err := keys.Load(ctx, k.Keyring, p, nil)
	if ring == nil {
		fmt.Fprintf(stderr, "keys: %v\n", err)
		return errReported
	}
	searchable := usesSearch(pol)
	unavailable := ring.Unavailable()
	problems := 0
	for _, o := range pol.File.Orgs {
		info, ok := ring.Info(o.ID)
		line, bad := orgKeysVerdict(o.ID, k.Keyring, info, ok, slices.Contains(unavailable, o.ID), searchable)
		if bad {
			problems++
			fmt.Fprintf(stderr, "keys: %s: %s\n", o.ID, line)
			if ok && slices.Contains(unavailable, o.ID) {
				fmt.Fprintf(stderr, "keys: %s: %s\n", o.ID, orgError(err, o.ID))
			}
			continue
		}
		fmt.Fprintf(stdout, "keys: %s: %s\n", o.ID, line)
	}
	if problems > 0 {
		fmt.Fprintf(stderr, "%d organization(s) without usable keys\n", problems)
		return errReported
	}
	return nil
}

// orgKeysVerdict says what an org's keys are worth to serve: known (in
// the keyring), unwrapped, shredded, and with search keys when routes
// have searchable fields. bad: its PHI routes would fail.
func orgKeysVerdict(org, keyring string, info keys.OrgInfo, known, unavailable, searchable bool) (line string, bad bool) {
	switch {
	case !known:
		return fmt.Sprintf("no keyset in %s: its PHI routes would answer 503 (phiguard keys create -config POLICY -org %s)", keyring, org), true
	case unavailable:
		return "its keyset does not unwrap", true
	case !info.Shredded.IsZero():
		return fmt.Sprintf("shredded %s: its PHI is refused for good", info.Shredded.Format("2006-01-02")), false
	case searchable && len(info.Exact) == 0:
		return fmt.Sprintf("no search keys, and routes have searchable fields: those would answer 503 (phiguard keys rotate -config POLICY -org %s -search)", org), true
	}
	return fmt.Sprintf("ok (wrapped by %s, primary %08x)", info.Wrap, info.Primary), false
}

// orgError picks the part of a keyring load error about org; the error
// names orgs, never key material.
func orgError(err error, org string) string {
	if err == nil {
		return "unknown"
	}
	for _, e := range splitJoined(err) {
		if strings.Contains(e.Error(), org) {
			return e.Error()
		}
	}
	return err.Error()
}

func splitJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// usesSearch reports whether a route of pol has a searchable field or a
// search term: those need each org's search keys.
func usesSearch(pol *policy.Policy) bool {
	for _, r := range pol.Routes {
		if len(r.SearchRequest) > 0 {
			return true
		}
		for _, s := range r.EncryptRequest {
			if s.Search != "" {
				return true
			}
		}
	}
	return false
}
