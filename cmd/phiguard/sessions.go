package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/identity"
	"github.com/phiguard/phiguard/internal/orgid"
	"github.com/phiguard/phiguard/internal/redisclient"
	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/session"
)

// openSessionStore opens the store the policy's state section names.
func openSessionStore(st policy.State) (session.Store, error) {
	if st.Store != policy.StoreRedis {
		return session.NewMemory(st.MaxSessions), nil
	}
	o, err := redisOptions(st)
	if err != nil {
		return nil, err
	}
	return session.NewRedis(o)
}

// redisOptions reads the state section's Redis server, its password from
// the environment.
func redisOptions(st policy.State) (redisclient.Options, error) {
	r := st.Redis
	o := redisclient.Options{URL: r.URL, Prefix: r.KeyPrefix, Timeout: r.Timeout}
	if r.PasswordEnv != "" {
		if o.Password = os.Getenv(r.PasswordEnv); o.Password == "" {
			return o, fmt.Errorf("state.redis.password_env: %s is not set", r.PasswordEnv)
		}
	}
	return o, nil
}

// revokeRequest is the body of POST /sessions/revoke on the admin
// listener, and what `phiguard sessions revoke` asks for.
type revokeRequest struct {
	Org     string `json:"org,omitempty"`
	User    string `json:"user,omitempty"`
	Session string `json:"session,omitempty"`
}

// revocation checks r and makes it a revocation as of now, kept as long
// as pol's limits need.
func (r revokeRequest) revocation(pol *policy.Policy, now time.Time) (session.Revocation, error) {
	if r.Org != "" {
		if err := orgid.Check(r.Org); err != nil {
			return session.Revocation{}, err
		}
		if _, ok := pol.SessionLimits(r.Org); !ok {
			return session.Revocation{}, fmt.Errorf("org %q has no session tracking (hipaa: true, or idle_timeout/absolute_timeout, in orgs[]): its sessions cannot be revoked", r.Org)
		}
	}
	if len(r.User) > identity.MaxUserLen {
		return session.Revocation{}, errors.New("the user id is too long")
	}
	rv := session.Revocation{Org: r.Org, User: r.User, Ref: sessionRef(r.Session), At: now, Keep: pol.SessionKeep(r.Org)}
	if r.Session != "" && rv.Ref == "" {
		return session.Revocation{}, fmt.Errorf("-session takes a reference (ses_…, as audit records show it) or sid:VALUE, jti:VALUE")
	}
	return rv, rv.Check()
}

// sessionRef reads a session as an operator names it: its reference
// (ses_…, from an audit record), or its id (sid:VALUE, jti:VALUE).
func sessionRef(s string) string {
	switch {
	case s == "", identity.ValidSessionRef(s):
		return s
	case strings.HasPrefix(s, "sid:") && len(s) > 4, strings.HasPrefix(s, "jti:") && len(s) > 4:
		return identity.SessionRef(s)
	}
	return ""
}

// revokeAttrs are the audit attributes of rv: what was revoked, never a
// session id.
func revokeAttrs(rv session.Revocation) []string {
	var a []string
	for _, kv := range [][2]string{{"org", rv.Org}, {"user", rv.User}, {"session", rv.Ref}} {
		if kv[1] != "" {
			a = append(a, kv[0], kv[1])
		}
	}
	return append(a, "at", rv.At.UTC().Format(time.RFC3339Nano))
}

// revokeHandler serves POST /sessions/revoke: the way to the memory
// store of a running phiguard. Only loopback peers may call it (kubectl
// exec into the pod); a revocation is recorded on the audit trail.
func (sc *sidecar) revokeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answer, fail := adminAnswers(w)
		if !fromLoopback(r) {
			fail(http.StatusForbidden, "sessions are revoked from the pod itself (loopback) only")
			return
		}
		var req revokeRequest
		if err := decodeAdmin(r, &req); err != nil {
			fail(http.StatusBadRequest, "want a JSON object with org, user or session")
			return
		}
		rv, err := req.revocation(sc.Policy(), time.Now())
		if err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		if err := sc.revoke(r.Context(), rv, "admin listener"); err != nil {
			fail(http.StatusServiceUnavailable, err.Error())
			return
		}
		answer(http.StatusOK, map[string]any{"revoked": req, "at": rv.At.UTC().Format(time.RFC3339Nano)})
	})
}

// adminAnswers returns how an admin endpoint answers: a JSON value, or a
// JSON error; never cached.
func adminAnswers(w http.ResponseWriter) (answer func(status int, v any), fail func(status int, msg string)) {
	answer = func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	return answer, func(status int, msg string) { answer(status, map[string]string{"error": msg}) }
}

// decodeAdmin reads an admin endpoint's JSON body into v: one object,
// small, with no member v does not know.
func decodeAdmin(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 4<<10))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// fromLoopback reports whether r came from the pod itself: the admin
// endpoints that change state take no other caller.
func fromLoopback(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// revoke applies rv to the store in force and records it. A revocation
// the store took stands even when the audit trail does not take its
// record (it only takes access away); the error says so.
func (sc *sidecar) revoke(ctx context.Context, rv session.Revocation, via string) error {
	if err := sc.sessions.Revoke(ctx, rv); err != nil {
		sc.log.Error("session revocation failed", "err_kind", "store")
		return errors.New("the session store did not take the revocation; nothing was revoked")
	}
	attrs := append(revokeAttrs(rv), "via", via, "result", "success")
	if err := sc.auditor.Event(ctx, audit.EventSessionRevoke, attrs...); err != nil {
		return fmt.Errorf("revoked, but the audit record was not written: %w", err)
	}
	sc.log.Info("sessions revoked", "via", via, "org", rv.Org, "session", rv.Ref != "")
	return nil
}

const sessionsUsage = `Usage: phiguard sessions revoke -config FILE (-org ID [-user ID] | -user ID | -session REF)

Ends sessions now, in every phiguard that shares the policy's session
store: their next request gets 401 session_revoked, and the user signs in
again (the "remote wipe" of a lost device). -org alone: every session of
the org; -org and -user: that user's sessions there; -user alone: the
user's sessions in every org; -session: one session, by the reference
audit records show (ses_…) or by its sid:VALUE or jti:VALUE. Logins
after the revocation are not affected.

With state.store redis, the revocation is written to Redis directly.
With the memory store, it is sent to the running phiguard's admin
listener (admin.listen, or -admin URL), which takes it only from
loopback: run it inside the pod (kubectl exec). Either way it is audited
(event session_revoke).
`

func cmdSessions(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "revoke" {
		if len(args) > 0 && isHelp(args[0]) {
			fmt.Fprint(stdout, sessionsUsage)
			return nil
		}
		fmt.Fprint(stderr, sessionsUsage)
		return usageError{"sessions needs a subcommand: revoke"}
	}
	fs := newFlags("sessions revoke", "Ends sessions now; see phiguard sessions -h.", stdout, stderr)
	config := fs.String("config", "", "the policy `FILE` (required)")
	var req revokeRequest
	fs.StringVar(&req.Org, "org", "", "revoke the sessions of organization `ID`")
	fs.StringVar(&req.User, "user", "", "revoke the sessions of user `ID` (in -org, else in every org)")
	fs.StringVar(&req.Session, "session", "", "revoke one session: `REF` (ses_…) or sid:VALUE or jti:VALUE")
	admin := fs.String("admin", "", "the admin listener's base `URL` (memory store); default http://admin.listen")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *config == "" {
		return usageError{"sessions revoke needs -config FILE"}
	}
	if req.Org == "" && req.User == "" && req.Session == "" {
		return usageError{"say whose sessions to revoke: -org, -user or -session"}
	}
	pol, err := policy.Load(*config)
	if err != nil {
		return err
	}
	rv, err := req.revocation(pol, time.Now())
	if err != nil {
		return usageError{err.Error()}
	}
	if pol.File.State.Store == policy.StoreRedis && *admin == "" {
		return revokeInStore(ctx, pol, rv, stdout, stderr)
	}
	return revokeViaAdmin(ctx, pol, *admin, req, stdout)
}

// revokeInStore writes rv to the policy's shared store, and the record
// to its audit sinks.
func revokeInStore(ctx context.Context, pol *policy.Policy, rv session.Revocation, stdout, stderr io.Writer) error {
	st, err := openSessionStore(pol.File.State)
	if err != nil {
		return err
	}
	defer st.Close()
	trail, err := cliAuditor(nil, pol, stderr)
	if err != nil {
		return err
	}
	defer trail.close()
	if err := st.Revoke(ctx, rv); err != nil {
		return fmt.Errorf("nothing was revoked: %w", err)
	}
	fmt.Fprintf(stdout, "revoked %s as of %s\n", describe(rv), rv.At.UTC().Format(time.RFC3339))
	return trail.record(audit.EventSessionRevoke, append(revokeAttrs(rv), "via", "cli", "result", "success")...)
}

// revokeViaAdmin asks the running phiguard to revoke.
func revokeViaAdmin(ctx context.Context, pol *policy.Policy, base string, req revokeRequest, stdout io.Writer) error {
	var out struct {
		At string `json:"at"`
	}
	if err := askAdmin(ctx, pol, base, http.MethodPost, "/sessions/revoke", req, &out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked %s as of %s\n", describe(session.Revocation{Org: req.Org, User: req.User, Ref: sessionRef(req.Session)}), out.At)
	return nil
}

// describe says what rv revokes, in words.
func describe(rv session.Revocation) string {
	switch {
	case rv.Ref != "":
		return "session " + rv.Ref
	case rv.User != "" && rv.Org != "":
		return fmt.Sprintf("every session of user %s in org %s", rv.User, rv.Org)
	case rv.User != "":
		return fmt.Sprintf("every session of user %s in every org", rv.User)
	}
	return "every session of org " + rv.Org
}
