package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/consent"
	"github.com/phiguard/phiguard/policy"
)

// openConsentStore opens the consent registry in the store the policy's
// state section names.
func openConsentStore(st policy.State, c policy.Consent) (consent.Store, error) {
	if st.Store != policy.StoreRedis {
		return consent.NewMemory(c.MaxEntries), nil
	}
	o, err := redisOptions(st)
	if err != nil {
		return nil, err
	}
	return consent.NewRedis(o)
}

// consentChange is the body of POST /consent on the admin listener: a
// number's keyed hash, never the number.
type consentChange struct {
	Org    string `json:"org"`
	Ref    string `json:"ref"`
	State  string `json:"state"` // granted or revoked
	Source string `json:"source"`
}

// consentEntry is one registry entry as the CLI and the admin listener show it.
type consentEntry struct {
	Ref    string `json:"ref"`
	State  string `json:"state"`
	At     string `json:"at,omitempty"`
	Source string `json:"source,omitempty"`
}

func showEntry(e consent.Entry, ref string) consentEntry {
	ce := consentEntry{Ref: ref, State: e.State.String(), Source: e.Source}
	if !e.At.IsZero() {
		ce.At = e.At.UTC().Format(time.RFC3339)
	}
	return ce
}

func parseState(s string) (consent.State, error) {
	switch s {
	case "granted":
		return consent.Granted, nil
	case "revoked":
		return consent.Revoked, nil
	}
	return consent.Unknown, errors.New("state is granted or revoked")
}

// consentHandler serves GET /consent?org=ID[&ref=REF][&limit=N] and POST
// /consent: the way to the memory registry of a running phiguard. Only
// loopback peers may call it (kubectl exec into the pod); a change is
// recorded on the audit trail.
func (sc *sidecar) consentHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answer, fail := adminAnswers(w)
		if !fromLoopback(r) {
			fail(http.StatusForbidden, "consent is read and changed from the pod itself (loopback) only")
			return
		}
		switch r.Method {
		case http.MethodGet:
			q := r.URL.Query()
			org := q.Get("org")
			if !sc.Policy().KnowsOrg(org) {
				fail(http.StatusBadRequest, "org: not an organization of the policy")
				return
			}
			if ref := q.Get("ref"); ref != "" {
				e, err := sc.consent.Get(r.Context(), org, ref)
				if err != nil {
					fail(http.StatusServiceUnavailable, "the consent registry did not answer")
					return
				}
				answer(http.StatusOK, []consentEntry{showEntry(e, ref)})
				return
			}
			limit, _ := strconv.Atoi(q.Get("limit"))
			list, err := sc.consent.List(r.Context(), org, limit)
			if err != nil {
				fail(http.StatusServiceUnavailable, "the consent registry did not answer")
				return
			}
			out := make([]consentEntry, 0, len(list))
			for _, e := range list {
				out = append(out, showEntry(e, e.Ref))
			}
			answer(http.StatusOK, out)
		case http.MethodPost:
			var req consentChange
			if err := decodeAdmin(r, &req); err != nil {
				fail(http.StatusBadRequest, "want a JSON object with org, ref, state and source")
				return
			}
			e, err := req.entry(sc.Policy(), time.Now())
			if err != nil {
				fail(http.StatusBadRequest, err.Error())
				return
			}
			applied, err := recordConsent(r.Context(), sc.consent, e, func(attrs ...string) error {
				return sc.auditor.Event(r.Context(), audit.EventConsentChange, append(attrs, "via", "admin listener")...)
			})
			if err != nil {
				fail(http.StatusServiceUnavailable, err.Error())
				return
			}
			answer(http.StatusOK, map[string]any{"applied": applied, "entry": showEntry(e, e.Ref)})
		default:
			w.Header().Set("Allow", "GET, POST")
			fail(http.StatusMethodNotAllowed, "GET or POST")
		}
	})
}

// entry checks c and makes it an entry as of now.
func (c consentChange) entry(pol *policy.Policy, now time.Time) (consent.Entry, error) {
	if !pol.KnowsOrg(c.Org) {
		return consent.Entry{}, fmt.Errorf("org %q is not listed under orgs", c.Org)
	}
	st, err := parseState(c.State)
	if err != nil {
		return consent.Entry{}, err
	}
	e := consent.Entry{Org: c.Org, Ref: c.Ref, State: st, At: now, Source: c.Source}
	return e, e.Check()
}

// recordConsent records e and its audit event. A change the registry
// took stands even when the trail did not take its record; the error says so.
func recordConsent(ctx context.Context, st consent.Store, e consent.Entry, record func(attrs ...string) error) (bool, error) {
	applied, err := st.Record(ctx, e)
	if err != nil {
		return false, errors.New("the consent registry did not take the change; nothing was changed")
	}
	attrs := []string{"org", e.Org, "ref", e.Ref, "state", e.State.String(), "source", e.Source, "at", e.At.UTC().Format(time.RFC3339Nano), "result", "success"}
	if err := record(attrs...); err != nil {
		return applied, fmt.Errorf("changed, but the audit record was not written: %w", err)
	}
	return applied, nil
}

const consentUsage = `Usage: phiguard consent grant|revoke -config FILE -org ID -number PHONE [-source TEXT]
       phiguard consent show -config FILE -org ID -number PHONE
       phiguard consent list -config FILE -org ID [-limit N]

The SMS consent registry: patients' STOP and START replies update it by
themselves (routes' consent_keywords); grant and revoke record consent
that arrives by other means (a signed form at the front desk, a call),
and the latest event wins. A number is normalized to E.164 and kept only
as its keyed hash (audit.hash_key): list shows hashes, which match the
consent_ref of audit records; show hashes the number you give.

With state.store redis, the registry is read and written directly. With
the memory store, the running phiguard's admin listener (admin.listen, or
-admin URL) is asked, from loopback only: run it inside the pod. Changes
are audited (event consent_change).
`

func cmdConsent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || !(args[0] == "grant" || args[0] == "revoke" || args[0] == "show" || args[0] == "list") {
		if len(args) > 0 && isHelp(args[0]) {
			fmt.Fprint(stdout, consentUsage)
			return nil
		}
		fmt.Fprint(stderr, consentUsage)
		return usageError{"consent needs a subcommand: grant, revoke, show or list"}
	}
	sub := args[0]
	fs := newFlags("consent "+sub, "The SMS consent registry; see phiguard consent -h.", stdout, stderr)
	config := fs.String("config", "", "the policy `FILE` (required)")
	org := fs.String("org", "", "the organization `ID` (required)")
	number := fs.String("number", "", "the patient's phone `NUMBER` (grant, revoke, show)")
	source := fs.String("source", "cli", "how the consent arrived, e.g. front-desk-form (grant, revoke)")
	limit := fs.Int("limit", 0, "list at most `N` entries (0: all)")
	admin := fs.String("admin", "", "the admin listener's base `URL` (memory store); default http://admin.listen")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *config == "" || *org == "" {
		return usageError{"consent " + sub + " needs -config FILE and -org ID"}
	}
	if (sub == "list") != (*number == "") {
		return usageError{"consent list takes no -number; grant, revoke and show need one"}
	}
	pol, err := policy.Load(*config)
	if err != nil {
		return err
	}
	if !pol.KnowsOrg(*org) {
		return usageError{fmt.Sprintf("org %q is not listed under orgs", *org)}
	}
	var ref string
	if *number != "" {
		hasher, err := loadHasher(pol.File.Audit.HashKey)
		if err != nil {
			return err
		}
		if hasher == nil {
			return usageError{"consent keeps numbers as keyed hashes: the policy needs audit.hash_key"}
		}
		num, err := consent.Normalize(*number)
		if err != nil {
			return usageError{"-number: not a phone number (E.164, or a 10-digit North American number)"}
		}
		ref = hasher.Hash(num)
	}
	direct := pol.File.State.Store == policy.StoreRedis && *admin == ""
	switch sub {
	case "grant", "revoke":
		c := consentChange{Org: *org, Ref: ref, State: "granted", Source: *source}
		if sub == "revoke" {
			c.State = "revoked"
		}
		e, err := c.entry(pol, time.Now())
		if err != nil {
			return usageError{err.Error()}
		}
		if direct {
			return consentInStore(ctx, pol, e, stdout, stderr)
		}
		var out struct {
			Applied bool `json:"applied"`
		}
		if err := askAdmin(ctx, pol, *admin, http.MethodPost, "/consent", c, &out); err != nil {
			return err
		}
		printChange(stdout, e, out.Applied)
		return nil
	}
	var entries []consentEntry
	if direct {
		st, err := openConsentStore(pol.File.State, pol.File.Consent)
		if err != nil {
			return err
		}
		defer st.Close()
		if ref != "" {
			e, err := st.Get(ctx, *org, ref)
			if err != nil {
				return fmt.Errorf("the consent registry did not answer: %w", err)
			}
			entries = []consentEntry{showEntry(e, ref)}
		} else {
			list, err := st.List(ctx, *org, *limit)
			if err != nil {
				return fmt.Errorf("the consent registry did not answer: %w", err)
			}
			for _, e := range list {
				entries = append(entries, showEntry(e, e.Ref))
			}
		}
	} else {
		q := url.Values{"org": {*org}}
		if ref != "" {
			q.Set("ref", ref)
		}
		if *limit > 0 {
			q.Set("limit", strconv.Itoa(*limit))
		}
		if err := askAdmin(ctx, pol, *admin, http.MethodGet, "/consent?"+q.Encode(), nil, &entries); err != nil {
			return err
		}
	}
	for _, e := range entries {
		fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", e.Ref, e.State, orDash(e.At), orDash(e.Source))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printChange(w io.Writer, e consent.Entry, applied bool) {
	if !applied {
		fmt.Fprintf(w, "not applied: the registry holds a later event for %s in org %s\n", e.Ref, e.Org)
		return
	}
	fmt.Fprintf(w, "consent %s for %s in org %s as of %s\n", e.State, e.Ref, e.Org, e.At.UTC().Format(time.RFC3339))
}

// consentInStore writes e to the policy's shared registry, and the record
// to its audit sinks.
func consentInStore(ctx context.Context, pol *policy.Policy, e consent.Entry, stdout, stderr io.Writer) error {
	st, err := openConsentStore(pol.File.State, pol.File.Consent)
	if err != nil {
		return err
	}
	defer st.Close()
	trail, err := cliAuditor(nil, pol, stderr)
	if err != nil {
		return err
	}
	defer trail.close()
	applied, err := recordConsent(ctx, st, e, func(attrs ...string) error {
		return trail.record(audit.EventConsentChange, append(attrs, "via", "cli")...)
	})
	if err != nil && !applied {
		return err
	}
	printChange(stdout, e, applied)
	return err
}

// askAdmin sends one request to the running phiguard's admin listener
// and decodes its JSON answer into out.
func askAdmin(ctx context.Context, pol *policy.Policy, base, method, path string, in, out any) error {
	if base == "" {
		a := pol.File.Admin
		if a == nil {
			return usageError{"admin.listen is off: give the running phiguard's admin listener with -admin URL"}
		}
		host, port, err := net.SplitHostPort(a.Listen)
		if err != nil {
			return err
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		base = "http://" + net.JoinHostPort(host, port)
	}
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, body)
	if err != nil {
		return usageError{fmt.Sprintf("-admin: %v", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("the running phiguard's admin listener did not answer (is this its pod?): %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("the admin listener's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			return fmt.Errorf("the admin listener answered %s", resp.Status)
		}
		return errors.New(e.Error)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("the admin listener answered %s, not what was asked", resp.Status)
	}
	return nil
}
