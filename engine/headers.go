package engine

import (
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"

	"github.com/phiguard/phiguard/engine/codec"
	"github.com/phiguard/phiguard/policy"
)

// Headers phiguard sets for the app. Clients can never send them.
const (
	headerPrefix    = "X-Phiguard-"
	headerRequestID = "X-Phiguard-Request-Id"
	headerOrg       = "X-Phiguard-Org"
	headerUser      = "X-Phiguard-User"
	headerRole      = "X-Phiguard-Role"
)

// strippedHeaders override the method, the URL or the client's identity in
// one app framework or another. phiguard judged the request without them,
// so the app must not act on them.
var strippedHeaders = []string{
	"X-Http-Method-Override", "X-Http-Method", "X-Method-Override", "X-Original-Method",
	"X-Original-Url", "X-Rewrite-Url", "X-Override-Url",
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port",
	"X-Forwarded-Prefix", "X-Forwarded-Server", "X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Forwarded-Uri",
	"X-Real-Ip", "X-Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip", "X-Cluster-Client-Ip", "Client-Ip",
	"X-Originating-Ip", "X-Remote-Ip", "X-Remote-Addr",
}

// strippedSet holds strippedHeaders, for lookups.
var strippedSet = setOf(strippedHeaders)

func setOf(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// methodOverrideParams are query parameters that frameworks read as the method.
var methodOverrideParams = map[string]bool{
	"_method": true, "__method": true, "_httpmethod": true, "x-http-method-override": true, "x-method-override": true,
}

// methodOverrideParam is the body field Rails, Laravel and Symfony read as
// the method; phiguard refuses it in the bodies it parses.
const methodOverrideParam = "_method"

// methodOverrideField selects it at the top of a JSON body.
var methodOverrideField = policy.Selector{Text: "$._method", Steps: []policy.Step{{Kind: policy.StepChild, Name: methodOverrideParam}}}

// guardedHeaders returns the headers phiguard judges or sets: the
// stripped ones, and the org headers the policy's routes read.
func guardedHeaders(pol *policy.Policy) map[string]bool {
	g := make(map[string]bool, len(strippedHeaders)+4)
	for _, h := range strippedHeaders {
		g[h] = true
	}
	for _, r := range pol.Routes {
		if r.OrgFrom.Kind == policy.OrgFromHeader {
			g[r.OrgFrom.Name] = true
		}
	}
	return g
}

// sanitize strips override and identity headers and refuses a query
// that overrides the method or has no single meaning. A header spelled
// with '_' where a guarded one has '-' (X_Phiguard_Org, X_Forwarded_For,
// X_Tenant) is stripped too: CGI-style servers (PHP, WSGI, some Rack
// servers) read both spellings as one HTTP_X_… variable. It returns the
// parsed query (nil when there is none) for the later checks.
func sanitize(h http.Header, q string, guarded map[string]bool) (url.Values, error) {
	// One pass over the request's few headers rather than a Del for each
	// of the many stripped names. Keys are read canonically, so a header
	// map built by hand (not by net/http) is judged the same way.
	for k := range h {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if strippedSet[ck] || strings.HasPrefix(ck, headerPrefix) {
			delete(h, k)
			continue
		}
		if strings.IndexByte(k, '_') >= 0 {
			dashed := http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-"))
			if guarded[dashed] || strings.HasPrefix(dashed, headerPrefix) {
				delete(h, k)
			}
		}
	}
	if q == "" {
		return nil, nil
	}
	if strings.Contains(q, ";") {
		return nil, badRequest("';' in the query string is ambiguous; encode it as %%3B")
	}
	vals, err := url.ParseQuery(q)
	if err != nil {
		return nil, badRequest("malformed query string")
	}
	for k, vs := range vals {
		if methodOverrideParams[strings.ToLower(k)] {
			return nil, badRequest("method override parameters are refused")
		}
		if codec.HasTokenMarker(k) || slices.ContainsFunc(vs, codec.HasTokenMarker[string]) {
			return nil, codec.PlantedToken("the query string")
		}
	}
	return vals, nil
}

// cacheHeaders tell a shared cache (a CDN, a reverse proxy, a service
// worker's fetch layer) to keep a response. Many CDNs obey their own
// header over Cache-Control, so each is removed from a response that may
// carry plaintext PHI.
var cacheHeaders = []string{
	"Cdn-Cache-Control", "Surrogate-Control", "Edge-Control", "X-Accel-Expires",
	"Cloudflare-Cdn-Cache-Control", "Vercel-Cdn-Cache-Control", "Fastly-Surrogate-Control",
	"Surrogate-Key", "Cache-Tag", "Expires", "Age", "Etag", "Last-Modified",
}

// cacheSet holds cacheHeaders, for lookups.
var cacheSet = setOf(cacheHeaders)

// forbidCaching makes sure no cache, shared or private, keeps a response:
// every caching directive of the app is dropped (including any
// *-Cache-Control a CDN reads), and no-store is set.
func forbidCaching(h http.Header) {
	for k := range h {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if cacheSet[ck] || strings.HasSuffix(ck, "-Cache-Control") || strings.HasSuffix(ck, "-Surrogate-Control") {
			delete(h, k)
		}
	}
	v := [...]string{"no-store, private, max-age=0", "no-cache", "0"}
	h["Cache-Control"], h["Pragma"], h["Expires"] = v[0:1:1], v[1:2:2], v[2:3:3]
}
