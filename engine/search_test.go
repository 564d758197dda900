package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/phiguard/phiguard/audit"
	"github.com/phiguard/phiguard/keys"
	"github.com/phiguard/phiguard/refusal"
)

const searchPolicy = `version: 1
ingress: {upstream: "http://app.invalid"}
identity: {jwt: {jwks: unused.json}}
keys: {keyring: unused}
orgs: [{id: org_a}, {id: org_b}]
search: {extra_stop_words: [patient]}
routes:
  - name: send
    match: {methods: [POST], path: "/m"}
    encrypt_request:
      - {field: "$.body", searchable: words}
      - {field: "$.phone", searchable: exact, normalize: phone}
      - {field: "$.mrn", searchable: exact}
      - "$.note"
    decrypt_response: ["$.body", "$.phone", "$.mrn", "$.note"]
  - name: hook
    match: {methods: [POST], path: "/hook"}
    encrypt_request: [{field: "form:Body", searchable: words}, {field: "form:From", searchable: exact, normalize: phone}]
  - name: find
    match: {methods: [GET], path: "/m"}
    search_request:
      - {field: "query:q", searchable: words}
      - {field: "query:any", searchable: words, join: " OR "}
      - {field: "query:phone", searchable: exact, normalize: phone}
    decrypt_response: ["$.data[*].body"]
    readers: [agent]
  - name: preflight
    match: {methods: [OPTIONS, DELETE], path: "/**"}
    auth: none
  - name: find-json
    match: {methods: [POST], path: "/m/search"}
    search_request: [{field: "$.terms", searchable: words, join: " AND "}, {field: "form:q", searchable: words}]
`

func searchRig(t *testing.T) *rig {
	r := newRigWith(t, searchPolicy, "org_a", "org_b")
	r.ver.extra = map[string]string{"Bearer bob": "org_b"}
	return r
}

// seal sends body (JSON or form) to path as user and returns what the app
// would get, and the exchange's audit record.
func (r *rig) seal(t *testing.T, user, path, ctype, body string) ([]byte, audit.Record, error) {
	t.Helper()
	ctx := context.Background()
	req := request("POST", path, user)
	req.Header.Set("Content-Type", ctype)
	x, err := r.eng.Begin(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	sealed, err := x.SealRequest(ctx, req.Header, strings.NewReader(body), int64(len(body)))
	if err != nil {
		return nil, x.rec, err
	}
	return bytes.Clone(sealed), x.rec, nil
}

// query sends GET /m?raw as user and returns the query the app would get.
func (r *rig) query(t *testing.T, user, raw string) (string, audit.Record, error) {
	t.Helper()
	req := request("GET", "/m", user)
	req.Query = raw
	x, err := r.eng.Begin(context.Background(), req)
	defer x.Close()
	return x.Query(), x.rec, err
}

func field(t *testing.T, body []byte, name string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	v, ok := m[name].(string)
	if !ok {
		t.Fatalf("no string %s in %s", name, body)
	}
	return v
}

// TestSearchableWords: a words field is stored as its token followed by
// one index word per distinct indexed word, with no plaintext; a reader
// gets the text back without index words; the record counts words and
// holds none.
func TestSearchableWords(t *testing.T) {
	r := searchRig(t)
	text := "Chest pain since Tuesday; the patient says CHEST pain " + canary
	sealed, rec, err := r.seal(t, "alice", "/m", "application/json", `{"body":"`+text+`"}`)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bytes.ToLower(sealed), []byte("chest")) || bytes.Contains(sealed, []byte(canary)) {
		t.Fatalf("plaintext in the sealed body: %s", sealed)
	}
	parts := strings.Split(field(t, sealed, "body"), " ")
	// chest pain since tuesday says canary diagnosis 7731: "the" and
	// "patient" are stop words, repeats are left out.
	if !keys.LooksLikeToken(parts[0]) || len(parts) != 1+8 {
		t.Fatalf("stored %q: want a token and 8 index words", parts)
	}
	for _, w := range parts[1:] {
		if !keys.IsIndexWord(w, 8) {
			t.Errorf("index word %q", w)
		}
	}
	if f := findField(rec, audit.ActionIndex, "$.body"); f == nil || f.Count != 8 {
		t.Errorf("record fields %+v: want index of 8 words on $.body", rec.Fields)
	}
	if encoded := rec.AppendJSON(nil); bytes.Contains(bytes.ToLower(encoded), []byte("chest")) || bytes.Contains(encoded, []byte(canary)) {
		t.Errorf("the record holds a word: %s", encoded)
	}

	// The reader sees the text, never an index word.
	out := r.open(t, "alice", sealed)
	if field(t, out, "body") != text {
		t.Errorf("opened %s", out)
	}

	// A query for two of the words becomes their index words, as stored.
	q, rec, err := r.query(t, "alice", "page=2&q=PAIN+ch%C3%A9st&sort=new")
	if err != nil {
		t.Fatal(err)
	}
	v, _ := url.ParseQuery(q)
	got := strings.Split(v.Get("q"), " ")
	if !strings.HasPrefix(q, "page=2&q=") || !strings.HasSuffix(q, "&sort=new") || len(got) != 2 || !slices.Contains(parts, got[0]) || !slices.Contains(parts, got[1]) {
		t.Errorf("query %q: want page and sort kept, q the index words of pain and chest among %q", q, parts)
	}
	if f := findField(rec, audit.ActionSearch, "query:q"); f == nil || f.Count != 2 || strings.Contains(q, "pain") {
		t.Errorf("search record %+v, query %q", rec.Fields, q)
	}
	// Unicode variants of a word give its index word: full-width letters,
	// capitals, accents.
	fw, _, err := r.query(t, "alice", "q="+url.QueryEscape("ＣＨＥＳＴ"))
	if v, _ := url.ParseQuery(fw); err != nil || !slices.Contains(parts, v.Get("q")) {
		t.Errorf("full-width CHEST: %q (%v), want one of the stored index words", fw, err)
	}
	if q, _, _ := r.query(t, "alice", "any=chest+pain"); !strings.Contains(q, "+OR+") {
		t.Errorf("join OR: %q", q)
	}

	// Another org's index words for the same text differ.
	other, _, err := r.seal(t, "bob", "/m", "application/json", `{"body":"`+text+`"}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range strings.Split(field(t, other, "body"), " ")[1:] {
		if slices.Contains(parts, w) {
			t.Errorf("org_b's index word %s is also org_a's", w)
		}
	}
}

func findField(rec audit.Record, action, path string) *audit.Field {
	for i, f := range rec.Fields {
		if f.Action == action && f.Path == path {
			return &rec.Fields[i]
		}
	}
	return nil
}

// open runs the app's answer body through the send route as user.
func (r *rig) open(t *testing.T, user string, body []byte) []byte {
	t.Helper()
	ctx := context.Background()
	req := request("POST", "/m", user)
	req.Header.Set("Content-Type", "application/json")
	x, err := r.eng.Begin(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	out, _, err := x.OpenResponse(ctx, 200, http.Header{"Content-Type": {"application/json"}}, bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(out)
}

// tokenRE matches a phiguard token in JSON text.
var tokenRE = regexp.MustCompile(`ephi:[^"]*`)

// TestSearchableExact: variants of one phone number seal to one token,
// in a body, a form and a query; another org's token differs; a reader
// sees the normalized value; what is not a phone number is refused with
// a reason that does not hold it.
func TestSearchableExact(t *testing.T) {
	r := searchRig(t)
	var toks []string
	for _, phone := range []string{"(555) 123-4567", "+1 555 123 4567", "555.123.4567"} {
		sealed, rec, err := r.seal(t, "alice", "/m", "application/json", `{"phone":"`+phone+`","mrn":42,"note":"n"}`)
		if err != nil {
			t.Fatal(err)
		}
		tok := field(t, sealed, "phone")
		// Outside the tokens (whose random bytes may spell anything), no digit of it.
		if !strings.HasPrefix(tok, "ephi:d1:org_a:") || strings.Contains(tokenRE.ReplaceAllString(string(sealed), ""), "555") {
			t.Fatalf("sealed %s", sealed)
		}
		if strings.HasPrefix(field(t, sealed, "note"), "ephi:d1:") || findField(rec, audit.ActionEncrypt, "$.phone") == nil {
			t.Errorf("note sealed exact, or no record: %s %+v", sealed, rec.Fields)
		}
		toks = append(toks, tok)
		if out := r.open(t, "alice", sealed); !bytes.Contains(out, []byte(`"phone":"+15551234567"`)) || !bytes.Contains(out, []byte(`"mrn":42`)) {
			t.Errorf("opened %s", out)
		}
	}
	if toks[0] != toks[1] || toks[1] != toks[2] {
		t.Errorf("one number, three tokens: %q", toks)
	}
	// Without normalization, one string written with and without escapes
	// is one value too.
	plain, _, err1 := r.seal(t, "alice", "/m", "application/json", `{"mrn":"MRN-42/a"}`)
	escaped, _, err2 := r.seal(t, "alice", "/m", "application/json", `{"mrn":"MRN\u002d42\/a"}`)
	if err1 != nil || err2 != nil || field(t, plain, "mrn") != field(t, escaped, "mrn") {
		t.Errorf("one MRN, two tokens: %s %s (%v %v)", plain, escaped, err1, err2)
	}
	form, _, err := r.seal(t, "alice", "/hook", "application/x-www-form-urlencoded", "From=%2B15551234567&Body=hi+pain")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := url.ParseQuery(string(form)); v.Get("From") != toks[0] || !strings.HasPrefix(v.Get("Body"), "ephi:v1:org_a:") || strings.Count(v.Get("Body"), " w9") != 2 {
		t.Errorf("form sealed %s", form)
	}
	q, _, err := r.query(t, "alice", "phone=%28555%29+123-4567")
	if v, _ := url.ParseQuery(q); err != nil || v.Get("phone") != toks[0] {
		t.Errorf("phone query %q (%v), want the stored token", q, err)
	}
	if sealed, _, _ := r.seal(t, "bob", "/m", "application/json", `{"phone":"555-123-4567"}`); field(t, sealed, "phone") == toks[0] || !strings.HasPrefix(field(t, sealed, "phone"), "ephi:d1:org_b:") {
		t.Errorf("org_b's token of the same number: %s", sealed)
	}
	for _, body := range []string{`{"phone":"call me at home, ` + canary + `"}`, `{"phone":5551234567}`} {
		_, _, err := r.seal(t, "alice", "/m", "application/json", body)
		var re *refusal.Error
		if !errors.As(err, &re) || re.Kind != refusal.BadRequest || strings.Contains(re.Reason, canary) || !strings.Contains(re.Reason, "$.phone") {
			t.Errorf("%s: %v", body, err)
		}
	}
	if _, _, err := r.query(t, "alice", "phone=nobody"); !errors.Is(err, refusal.BadRequest) {
		t.Errorf("a query that is not a phone number: %v", err)
	}
}

// TestSearchTerms: terms in a JSON body and a form become index words;
// a term with no indexed word, or not a string, is refused; the plaintext
// never reaches the app.
func TestSearchTerms(t *testing.T) {
	r := searchRig(t)
	sealed, rec, err := r.seal(t, "alice", "/m/search", "application/json", `{"terms":"Chest "PAIN"","limit":5}`)
	if err == nil {
		t.Fatalf("invalid JSON accepted: %s", sealed)
	}
	sealed, rec, err = r.seal(t, "alice", "/m/search", "application/json", `{"terms":"Chest pain `+canary+`","limit":5}`)
	if err != nil {
		t.Fatal(err)
	}
	terms := strings.Split(field(t, sealed, "terms"), " AND ")
	if len(terms) != 5 || !keys.IsIndexWord(terms[0], 8) || bytes.Contains(sealed, []byte(canary)) || !bytes.Contains(sealed, []byte(`"limit":5`)) {
		t.Errorf("sealed terms %s", sealed)
	}
	if f := findField(rec, audit.ActionSearch, "$.terms"); f == nil || f.Count != 5 {
		t.Errorf("record %+v", rec.Fields)
	}
	form, _, err := r.seal(t, "alice", "/m/search", "application/x-www-form-urlencoded", "q=chest")
	if v, _ := url.ParseQuery(string(form)); err != nil || v.Get("q") != terms[0] {
		t.Errorf("form term %s (%v), want %s", form, err, terms[0])
	}
	for _, body := range []string{`{"terms":"the of a"}`, `{"terms":"!!"}`, `{"terms":42}`, `{"terms":["chest"]}`} {
		if _, _, err := r.seal(t, "alice", "/m/search", "application/json", body); !errors.Is(err, refusal.BadRequest) {
			t.Errorf("%s: %v, want 400", body, err)
		}
	}
	if _, _, err := r.query(t, "alice", "q=the+patient"); !errors.Is(err, errNoWords) {
		t.Errorf("a query of stop words: %v", err)
	}
	if _, _, err := r.query(t, "alice", "q=%zz"); !errors.Is(err, refusal.BadRequest) {
		t.Errorf("a bad escape: %v", err)
	}
	// A parameter the app could read as q, which phiguard would not rewrite.
	for _, raw := range []string{"Q=chest", "q%5B%5D=chest", "q[0]=chest", "%20q=chest", "PHONE=5551234567"} {
		q, _, err := r.query(t, "alice", raw)
		if !errors.Is(err, refusal.BadRequest) {
			t.Errorf("%s: forwarded as %q (%v), want 400", raw, q, err)
		}
	}
	if q, _, err := r.query(t, "alice", "qq=chest&query=x"); err != nil || q != "qq=chest&query=x" {
		t.Errorf("other parameters: %q %v", q, err)
	}
	// A term already made of index words (the app's next-page link) is
	// forwarded as it is, not hashed again.
	first, _, _ := r.query(t, "alice", "any=chest+pain&page=1")
	next := strings.Replace(first, "page=1", "page=2", 1)
	if again, _, err := r.query(t, "alice", next); err != nil || again != next {
		t.Errorf("next page %q forwarded as %q (%v)", next, again, err)
	}
}

// TestSearchTermsElsewhere: a search term the route would not rewrite
// never reaches the app: in the body of a query-search route, in the
// query of a body-search route, in the other body format, in a request
// to the search path that another method or route takes, or in a Referer.
func TestSearchTermsElsewhere(t *testing.T) {
	r := searchRig(t)
	ctx := context.Background()
	for _, c := range []struct{ method, path, query, ctype, body string }{
		{"GET", "/m", "", "application/json", `{"q":"chest"}`},
		{"GET", "/m", "", "application/json", `{"Q":"chest"}`},
		{"GET", "/m", "", "application/x-www-form-urlencoded", "q=chest"},
		{"GET", "/m", "", "application/x-www-form-urlencoded", "q[]=chest"},
		{"POST", "/m/search", "terms=chest", "application/json", `{"terms":"fever"}`},
		{"POST", "/m/search", "q=chest", "application/x-www-form-urlencoded", "q=fever"},
		{"POST", "/m/search", "", "application/x-www-form-urlencoded", "terms=chest"},
		{"POST", "/m/search", "", "application/json", `{"q":"chest","terms":"fever"}`},
		{"OPTIONS", "/m", "q=chest", "", ""},
		{"DELETE", "/m", "Q=chest", "", ""},
		{"POST", "/m", "phone=5551234567", "application/json", `{"note":"n"}`},
	} {
		req := request(c.method, c.path, "alice")
		req.Query = c.query
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		x, err := r.eng.Begin(ctx, req)
		if err == nil && c.body != "" {
			_, err = x.SealRequest(ctx, req.Header, strings.NewReader(c.body), int64(len(c.body)))
		}
		x.Close()
		if !errors.Is(err, refusal.BadRequest) {
			t.Errorf("%s %s?%s %s: %v, want 400", c.method, c.path, c.query, c.body, err)
		}
	}
	// Other parameters on other methods pass; a Referer loses its query.
	req := request("OPTIONS", "/m", "")
	req.Query = "page=2"
	req.Header.Set("Referer", "https://app.example/search?q=chest#top")
	x, err := r.eng.Begin(ctx, req)
	x.Close()
	if err != nil || req.Header.Get("Referer") != "https://app.example/search" {
		t.Errorf("OPTIONS with page=2: %v; Referer %q", err, req.Header.Get("Referer"))
	}
}

// TestSearchNeedsAReader: a caller whose role may not read the route's
// fields may not search them: which rows match is what they hold.
func TestSearchNeedsAReader(t *testing.T) {
	r := searchRig(t)
	if _, _, err := r.query(t, "vic", "q=chest"); !errors.Is(err, refusal.Forbidden) {
		t.Errorf("a viewer's search: %v, want 403", err)
	}
}

// TestIndexedTokenReveal: a stored value opens only when what follows its
// token is index words; anything else there is masked.
func TestIndexedTokenReveal(t *testing.T) {
	r := searchRig(t)
	sealed, _, err := r.seal(t, "alice", "/m", "application/json", `{"body":"chest pain"}`)
	if err != nil {
		t.Fatal(err)
	}
	stored := field(t, sealed, "body")
	tok, _, _ := strings.Cut(stored, " ")
	for value, want := range map[string]string{
		stored:               "chest pain",
		tok:                  "chest pain",
		tok + " w9abcdefgh":  "chest pain",
		tok + " w9ab":        "chest pain",
		tok + " plaintext":   "[protected]",
		tok + "  w9abcdefgh": "[protected]",
		tok + " w9abcdefgh ": "[protected]",
		tok + " w9a":         "[protected]",
		tok + " w9ABCDEFGH":  "[protected]",
		"w9abcdefgh " + tok:  "[protected]",
		tok + " " + tok:      "[protected]",
	} {
		body, _ := jsontext.AppendQuote([]byte(`{"body":`), value)
		out := r.open(t, "alice", append(body, '}'))
		if got := field(t, out, "body"); got != want {
			t.Errorf("%q opened to %q, want %q", value, got, want)
		}
	}
}

// noSearchKeys is a keyring whose orgs have no search keys, as one made
// before they existed.
type noSearchKeys struct{ *ctxKeys }

func (noSearchKeys) AppendEncryptExact(context.Context, []byte, string, []byte) ([]byte, error) {
	return nil, keys.ErrNoSearchKeys
}

func (noSearchKeys) AppendIndexWord([]byte, string, []byte, int) ([]byte, error) {
	return nil, keys.ErrNoSearchKeys
}

// TestNoSearchKeys: an org without search keys gets its searchable values
// and search terms refused (503, naming the command that makes them),
// never forwarded as they are.
func TestNoSearchKeys(t *testing.T) {
	r := searchRig(t)
	eng, err := New(Options{Policy: r.eng.pol, Keys: noSearchKeys{r.keys}, Verifier: r.ver, Auditor: r.aud})
	if err != nil {
		t.Fatal(err)
	}
	r.eng = eng
	for _, body := range []string{`{"body":"chest"}`, `{"phone":"5551234567"}`} {
		_, _, err := r.seal(t, "alice", "/m", "application/json", body)
		var re *refusal.Error
		if !errors.As(err, &re) || re.Kind != refusal.KeysUnavailable || !strings.Contains(re.Reason, "keys rotate -org ID -search") {
			t.Errorf("%s: %v", body, err)
		}
	}
	if q, _, err := r.query(t, "alice", "q=chest"); !errors.Is(err, refusal.KeysUnavailable) {
		t.Errorf("search: %q %v", q, err)
	}
}
