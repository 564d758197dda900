package codec

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/phiguard/phiguard/policy"
	"github.com/phiguard/phiguard/refusal"
)

func selectors(t testing.TB, texts ...string) []policy.Selector {
	t.Helper()
	var out []policy.Selector
	for _, s := range texts {
		sel, err := policy.ParseSelector(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sel)
	}
	return out
}

// mark replaces a selected value with a string naming the selector and the
// original value, so tests see exactly what was picked.
func mark(dst []byte, sel int, v jsontext.Value) ([]byte, error) {
	return jsontext.AppendQuote(dst, "S"+string(rune('0'+sel))+":"+string(v))
}

func TestRewriteJSONSelects(t *testing.T) {
	for _, tc := range []struct {
		name string
		sels []string
		in   string
		want string
	}{
		{"child", []string{"$.body"}, `{"body":"hi","to":"x"}`, `{"body":"S0:\"hi\"","to":"x"}`},
		{"nested child", []string{"$.a.b"}, `{"a":{"b":1,"c":2},"b":3}`, `{"a":{"b":"S0:1","c":2},"b":3}`},
		{"array wildcard", []string{"$.att[*].caption"}, `{"att":[{"caption":"c1","url":"u"},{"url":"v"},{"caption":null}]}`,
			`{"att":[{"caption":"S0:\"c1\"","url":"u"},{"url":"v"},{"caption":"S0:null"}]}`},
		{"member wildcard", []string{"$.m.*"}, `{"m":{"x":1,"y":[2]},"n":3}`, `{"m":{"x":"S0:1","y":"S0:[2]"},"n":3}`},
		{"descendant", []string{"$..note"}, `{"note":1,"a":[{"note":{"note":2}},{"b":{"note":true}}]}`,
			`{"note":"S0:1","a":[{"note":"S0:{\"note\":2}"},{"b":{"note":"S0:true"}}]}`},
		{"quoted name", []string{"$['odd key']"}, `{"odd key":"x","odd":"y"}`, `{"odd key":"S0:\"x\"","odd":"y"}`},
		{"escaped key is decoded before matching", []string{"$.body"}, `{"b\u006fdy":"x"}`, `{"b\u006fdy":"S0:\"x\""}`},
		{"every type", []string{"$[*]"}, `["s",1.50e3,-0,true,false,null,{"a":1},[1]]`,
			`["S0:\"s\"","S0:1.50e3","S0:-0","S0:true","S0:false","S0:null","S0:{\"a\":1}","S0:[1]"]`},
		{"first selector wins", []string{"$.a", "$..a"}, `{"a":1,"b":{"a":2}}`, `{"a":"S0:1","b":{"a":"S1:2"}}`},
		{"whitespace and lexemes kept", []string{"$.x"}, "{ \"y\" : 1.000 ,\n\t\"x\" : \"v\" , \"z\":\"\\u00e9\" }\n",
			"{ \"y\" : 1.000 ,\n\t\"x\" : \"S0:\\\"v\\\"\" , \"z\":\"\\u00e9\" }\n"},
		{"nothing selected", []string{"$.absent"}, `{"a": [1, 2, {"b": "c"}]}`, `{"a": [1, 2, {"b": "c"}]}`},
		{"scalar root", []string{"$.a"}, `"just a string"`, `"just a string"`},
		{"selected value with whitespace inside", []string{"$.o"}, `{"o": { "k" : [ 1 ] }}`, `{"o": "S0:{ \"k\" : [ 1 ] }"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMatcher(selectors(t, tc.sels...))
			out, _, err := RewriteJSON([]byte(tc.in), m, mark)
			if err != nil {
				t.Fatalf("RewriteJSON: %v", err)
			}
			if string(out) != tc.want {
				t.Errorf("got  %s\nwant %s", out, tc.want)
			}
		})
	}
}

func TestRewriteJSONCounts(t *testing.T) {
	sels := selectors(t, "form:Body", "$.data[*].body", "$.title")
	m := NewMatcher(sels)
	_, counts, err := RewriteJSON([]byte(`{"data":[{"body":1},{"body":2},{}],"title":"t"}`), m, mark)
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 3 || counts[0] != 0 || counts[1] != 2 || counts[2] != 1 {
		t.Errorf("counts = %v, want [0 2 1]", counts)
	}
}

// TestAppendRewriteJSON: the body is appended after what dst holds, counts
// add up over calls, and nil counts are not kept.
func TestAppendRewriteJSON(t *testing.T) {
	m := NewMatcher(selectors(t, "$.title", "$.data[*].body"))
	src := []byte(`{"data":[{"body":1},{"body":2}],"title":"t"}`)
	counts := make([]int, 2)
	out, err := AppendRewriteJSON([]byte("prefix:"), src, m, mark, counts)
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := RewriteJSON(src, m, mark)
	if string(out) != "prefix:"+string(want) {
		t.Errorf("got %s, want prefix:%s", out, want)
	}
	if _, err := AppendRewriteJSON(nil, src, m, mark, counts); err != nil {
		t.Fatal(err)
	}
	if counts[0] != 2 || counts[1] != 4 {
		t.Errorf("counts after two bodies = %v, want [2 4]", counts)
	}
	if out, err := AppendRewriteJSON(nil, src, m, mark, nil); err != nil || string(out) != string(want) {
		t.Errorf("without counts: %s, %v", out, err)
	}
}

// TestAppendWiping: appending with room is append; growing leaves the old
// array wiped, and the result holds everything in order.
func TestAppendWiping(t *testing.T) {
	dst := append(make([]byte, 0, 16), "canary-phi"...)
	same := AppendWiping(dst, []byte("!"))
	if string(same) != "canary-phi!" || &same[0] != &dst[0] {
		t.Fatalf("with room: %q, moved %v", same, &same[0] != &dst[0])
	}
	grown := AppendWiping(same, []byte(" and more than fits"))
	if string(grown) != "canary-phi! and more than fits" {
		t.Fatalf("grown: %q", grown)
	}
	if &grown[0] == &dst[0] {
		t.Fatal("did not grow")
	}
	if strings.Contains(string(dst[:cap(dst)]), "canary") {
		t.Errorf("the array left behind still holds %q", dst[:cap(dst)])
	}
	if got := AppendWiping(nil, []byte("x")); string(got) != "x" {
		t.Errorf("from nil: %q", got)
	}
}

func TestRewriteJSONRefuses(t *testing.T) {
	deep := strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)
	okDeep := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	if _, _, err := RewriteJSON([]byte(okDeep), NewMatcher(selectors(t, "$.a")), mark); err != nil {
		t.Fatalf("nesting of exactly %d refused: %v", MaxDepth, err)
	}
	for _, tc := range []struct {
		name string
		sels []string
		in   string
		want error
	}{
		{"empty", []string{"$.a"}, ``, ErrMalformed},
		{"syntax", []string{"$.a"}, `{"a":}`, ErrMalformed},
		{"truncated", []string{"$.a"}, `{"a":"x"`, ErrMalformed},
		{"truncated array", []string{"$.a"}, `[1,2`, ErrMalformed},
		{"trailing data", []string{"$.a"}, `{"a":1} {"a":2}`, ErrMalformed},
		{"trailing garbage", []string{"$.a"}, `{"a":1}x`, ErrMalformed},
		{"comment", []string{"$.a"}, `{"a":1 /* c */}`, ErrMalformed},
		{"line comment", []string{"$.a"}, "{\"a\":1 // c\n}", ErrMalformed},
		{"duplicate selected key", []string{"$.a"}, `{"a":1,"a":2}`, ErrMalformed},
		{"duplicate unselected key", []string{"$.a"}, `{"b":{"c":1,"c":2}}`, ErrMalformed},
		{"duplicate via escape", []string{"$.body"}, `{"body":"x","b\u006fdy":"y"}`, ErrMalformed},
		{"invalid UTF-8", []string{"$.a"}, "{\"b\":\"\xff\"}", ErrMalformed},
		{"invalid UTF-8 in key", []string{"$.a"}, "{\"\xc3\x28\":1}", ErrMalformed},
		{"lone surrogate escape", []string{"$.a"}, `{"a":"\ud800"}`, ErrMalformed},
		{"too deep", []string{"$.a"}, deep, ErrMalformed},
		{"single quotes", []string{"$.a"}, `{'a':1}`, ErrMalformed},
		{"NaN", []string{"$.a"}, `{"a":NaN}`, ErrMalformed},
		{"BOM", []string{"$.a"}, "\ufeff{\"a\":1}", ErrMalformed},
		{"case variant of selected key", []string{"$.body"}, `{"Body":"x"}`, ErrAmbiguousKey},
		{"case variant beside selected key", []string{"$.body"}, `{"body":"x","BODY":"y"}`, ErrAmbiguousKey},
		{"case variant of a parent", []string{"$.data[*].body"}, `{"Data":[{"body":"x"}]}`, ErrAmbiguousKey},
		{"unicode fold variant", []string{"$.mask"}, `{"mas\u212a":"x"}`, ErrAmbiguousKey},
		{"long s fold variant", []string{"$.a.subject"}, `{"a":{"\u017fubject":"x"}}`, ErrAmbiguousKey},
		{"case variant of an upper-case selector", []string{"$.Subject"}, `{"subject":"x"}`, ErrAmbiguousKey},
		{"case variant below descendant", []string{"$..note"}, `{"a":{"NOTE":"x"}}`, ErrAmbiguousKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := RewriteJSON([]byte(tc.in), NewMatcher(selectors(t, tc.sels...)), mark)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v (out %q), want %v", err, out, tc.want)
			}
			var be *refusal.Error
			if !errors.As(err, &be) {
				t.Fatalf("error %T is not a *refusal.Error", err)
			}
		})
	}
}

func TestRewriteJSONErrorsCarryNoValues(t *testing.T) {
	const canary = "CANARY-PHI-7731"
	for _, in := range []string{
		`{"body":"` + canary + `","body":"x"}`,
		`{"body":"` + canary + `"} trailing`,
		`{"` + canary + `":1,"` + canary + `":2}`,
		`{"Body":"` + canary + `"}`,
		`{"body":"` + canary + `",}`,
	} {
		_, _, err := RewriteJSON([]byte(in), NewMatcher(selectors(t, "$.body")), mark)
		if err == nil {
			t.Fatalf("%s: no error", in)
		}
		if strings.Contains(err.Error(), canary) {
			t.Errorf("error %q holds a body value", err)
		}
	}
}

func TestRewriteJSONEditError(t *testing.T) {
	boom := errors.New("key failure")
	_, _, err := RewriteJSON([]byte(`{"a":1}`), NewMatcher(selectors(t, "$.a")), func(dst []byte, _ int, _ jsontext.Value) ([]byte, error) {
		return dst, boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("got %v, want the edit's error", err)
	}
}

// FuzzRewriteJSON: whatever the body, an identity edit gives back the input
// byte for byte, a replacing edit gives valid JSON, and nothing is accepted
// that a strict parser rejects.
func FuzzRewriteJSON(f *testing.F) {
	for _, s := range []string{
		`{"body":"hi","attachments":[{"caption":"c"}]}`, `{"a":{"b":[1,2,{"note":"n"}]}}`, `[]`, `"x"`, `{"Body":1}`,
		`{"a":1,"a":2}`, "{\"a\":\"\xff\"}", `{"odd key":[true,null]}`, ` { "body" : 1.5e10 } `, `{"b\u006fdy":"x"}`,
		wide(20, `,"k3":1`), wide(18, ""), `{"a":` + wide(17, "") + `,"a":1}`,
		// Names that fold to a selected one: by ASCII case, and by the
		// Kelvin sign and long s, which fold to ASCII letters.
		`{"SUBJECT":"x"}`, `{"subject":"x"}`, "{\"\u212aey\":1}", "{\"key\":{\"\u017fubject\":2}}", `{"ke":{"y":1}}`,
	} {
		f.Add([]byte(s))
	}
	sels := []policy.Selector{}
	for _, s := range []string{"$.body", "$.attachments[*].caption", "$..note", "$['odd key']", "$.a.*", "$.Subject", "$.key.subject"} {
		sel, _ := policy.ParseSelector(s)
		sels = append(sels, sel)
	}
	m := NewMatcher(sels)
	// full takes every step for every name: the answer the skip of
	// unnamed members must agree with.
	full := NewMatcher(sels)
	full.namedOK = false
	// m finds names in a short list; hashed, in the map larger sets use.
	hashed := NewMatcher(sels)
	hashed.few = nil
	if m.few == nil {
		f.Fatal("the fuzz selectors no longer take the short-list path")
	}
	tag := func(dst []byte, sel int, _ jsontext.Value) ([]byte, error) {
		return fmt.Appendf(dst, `"sel %d"`, sel), nil
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, gotCounts, gotErr := RewriteJSON(in, m, tag)
		want, wantCounts, wantErr := RewriteJSON(in, full, tag)
		if string(got) != string(want) || fmt.Sprint(gotCounts) != fmt.Sprint(wantCounts) || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("skipping unnamed members changed the answer for %q:\n%s %v %v\nwant\n%s %v %v", in, got, gotCounts, gotErr, want, wantCounts, wantErr)
		}
		if h, hCounts, hErr := RewriteJSON(in, hashed, tag); string(h) != string(want) || fmt.Sprint(hCounts) != fmt.Sprint(wantCounts) || fmt.Sprint(hErr) != fmt.Sprint(wantErr) {
			t.Fatalf("names found by hash changed the answer for %q:\n%s %v %v\nwant\n%s %v %v", in, h, hCounts, hErr, want, wantCounts, wantErr)
		}
		same, _, err := RewriteJSON(in, m, func(dst []byte, _ int, v jsontext.Value) ([]byte, error) { return append(dst, v...), nil })
		if err != nil {
			var be *refusal.Error
			if !errors.As(err, &be) || be.Kind != refusal.BadRequest {
				t.Fatalf("error %T is not a bad-request refusal: %v", err, err)
			}
			return
		}
		if !jsontext.Value(in).IsValid() {
			t.Fatalf("accepted invalid JSON %q", in)
		}
		if string(same) != string(in) {
			t.Fatalf("identity edit changed the body:\n in %q\nout %q", in, same)
		}
		out, _, err := RewriteJSON(in, m, func(dst []byte, _ int, _ jsontext.Value) ([]byte, error) { return append(dst, `"ephi:x"`...), nil })
		if err != nil {
			t.Fatalf("second pass failed: %v", err)
		}
		if !jsontext.Value(out).IsValid() {
			t.Fatalf("rewrite produced invalid JSON %q", out)
		}
	})
}

func BenchmarkRewriteJSON(b *testing.B) {
	benchRewrite(b, NewMatcher(selectors(b, "$.data[*].body", "$.data[*].attachments[*].caption")))
}

// BenchmarkRewriteJSONRequest: the same body judged as a request, so every
// unselected string and key is also searched for token-like text.
func BenchmarkRewriteJSONRequest(b *testing.B) {
	benchRewrite(b, NewRequestMatcher(selectors(b, "$.data[*].body", "$.data[*].attachments[*].caption")))
}

func benchRewrite(b *testing.B, m *Matcher) {
	var sb strings.Builder
	sb.WriteString(`{"data":[`)
	for i := range 50 {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(`{"id":"m_123456","conversation_id":"c_42","direction":"outbound","body":"Your appointment is Tuesday at 10am with Dr. Rivera.","attachments":[{"url":"https://files.example/a.png","caption":"referral"}],"created_at":"2026-11-22T10:00:00Z"}`)
	}
	sb.WriteString(`],"next":null}`)
	runRewrite(b, []byte(sb.String()), m, `"ephi:v1:org_a:0a1b2c3d:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"`)
}

// runRewrite measures RewriteJSON on in, each selected value replaced by repl.
func runRewrite(b *testing.B, in []byte, m *Matcher, repl string) {
	edit := func(dst []byte, _ int, _ jsontext.Value) ([]byte, error) { return append(dst, repl...), nil }
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := RewriteJSON(in, m, edit); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRefusedKeys(t *testing.T) {
	refused := selectors(t, "$._method")
	m := NewMatcher(selectors(t, "$.body"), refused...)
	if m.Empty() {
		t.Fatal("a matcher with a selector reports Empty")
	}
	if !NewMatcher(nil, refused...).Empty() {
		t.Error("a matcher with only refused selectors is not Empty")
	}
	for _, in := range []string{`{"body":"x","_method":"DELETE"}`, `{"_METHOD":"PUT"}`, `{"_Method":null}`} {
		if _, _, err := RewriteJSON([]byte(in), m, mark); !errors.Is(err, ErrRefusedKey) {
			t.Errorf("%s: got %v, want ErrRefusedKey", in, err)
		}
	}
	out, counts, err := RewriteJSON([]byte(`{"body":"x","meta":{"_method":"kept"}}`), m, mark)
	if err != nil || string(out) != `{"body":"S0:\"x\"","meta":{"_method":"kept"}}` || len(counts) != 1 || counts[0] != 1 {
		t.Errorf("nested _method: %s %v %v", out, counts, err)
	}
}

func TestRequestMatcherRefusesPlantedTokens(t *testing.T) {
	const tok = "ephi:v1:org_a:0badc0de:CANARYPHIx"
	m := NewRequestMatcher(selectors(t, "$.body", "$.att[*].caption"))
	for _, tc := range []struct{ name, in string }{
		{"unselected top-level value", `{"body":"x","note":"` + tok + `"}`},
		{"unselected nested value", `{"meta":{"a":[1,{"b":"` + tok + `"}]}}`},
		{"inside a longer string", `{"note":"see ` + tok + ` here"}`},
		{"upper-case prefix", `{"note":"EPHI:V1:ORG_A"}`},
		{"escaped letter", `{"note":"\u0065phi:v1:org_a:0badc0de:AA"}`},
		{"escaped colon", `{"note":"ephi\u003av1:org_a"}`},
		{"percent-encoded colon", `{"note":"ephi%3Av1%3Aorg_a"}`},
		{"backslash escape spelled out", `{"note":"ephi\\u003av1"}`},
		{"HTML entity colon", `{"note":"ephi&#58;v1"}`},
		{"as a key", `{"meta":{"` + tok + `":1}}`},
		{"as an escaped key", `{"\u0065phi:v1:x":1}`},
		{"element of an unselected array", `{"tags":["` + tok + `"]}`},
		{"root string", `"` + tok + `"`},
		{"beside a selected array element", `{"att":[{"caption":"c","url":"` + tok + `"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := RewriteJSON([]byte(tc.in), m, mark)
			if !errors.Is(err, ErrPlantedToken) {
				t.Fatalf("got %v, want ErrPlantedToken", err)
			}
			if strings.Contains(err.Error(), "CANARYPHI") || strings.Contains(err.Error(), "org_a") {
				t.Errorf("the error names the value: %v", err)
			}
		})
	}
	// A token in a selected value is sealed again, not refused; ordinary
	// text that merely contains the letters passes.
	for _, in := range []string{
		`{"body":"` + tok + `"}`,
		`{"att":[{"caption":"` + tok + `"}]}`,
		`{"note":"Ephippium, zephir; ephi without a colon"}`,
	} {
		if _, _, err := RewriteJSON([]byte(in), m, mark); err != nil {
			t.Errorf("%s: %v", in, err)
		}
	}
	// Response bodies are the app's own: no such check there.
	if _, _, err := RewriteJSON([]byte(`{"note":"`+tok+`"}`), NewMatcher(selectors(t, "$.body")), mark); err != nil {
		t.Errorf("response matcher refused a token: %v", err)
	}
}

func TestRequestMatcherRefusesPatchDocuments(t *testing.T) {
	m := NewRequestMatcher(selectors(t, "$.body"))
	for _, in := range []string{
		`[{"op":"replace","path":"/body","value":"CANARY"}]`,
		`[{"path":"/body","op":"add","value":{"x":1}}]`,
		`[{"OP":"add","Path":"/body","value":"v"}]`,
		`[{"op":"test","path":"/x","value":1},{"op":"copy","from":"/note","path":"/body"}]`,
		`[1,{"op":"remove","path":"/body"}]`,
	} {
		if _, _, err := RewriteJSON([]byte(in), m, mark); !errors.Is(err, ErrPatchDocument) {
			t.Errorf("%s: got %v, want ErrPatchDocument", in, err)
		}
	}
	// Arrays that are not operations, and op/path deeper down, are data.
	for _, in := range []string{
		`[{"body":"x"},{"op":"only"}]`,
		`{"ops":[{"op":"replace","path":"/body"}]}`,
		`[[{"op":"a","path":"/b"}]]`,
	} {
		if _, _, err := RewriteJSON([]byte(in), m, mark); err != nil {
			t.Errorf("%s: %v", in, err)
		}
	}
	if _, _, err := RewriteJSON([]byte(`[{"op":"replace","path":"/body"}]`), NewMatcher(selectors(t, "$.body")), mark); err != nil {
		t.Errorf("response matcher refused an array: %v", err)
	}
}

// doc4KB is a 4 KB request document with ten 200-byte PHI fields among
// ordinary ones, and the selectors that pick them.
func doc4KB(tb testing.TB) ([]byte, []policy.Selector) {
	var sb strings.Builder
	var sels []string
	sb.WriteString(`{"id":"m_123456","conversation_id":"c_42","direction":"outbound","meta":{"channel":"sms","priority":2,"tags":["reminder","cardiology"]}`)
	for i := range 10 {
		name := "phi_" + string(rune('a'+i))
		sels = append(sels, "$."+name)
		sb.WriteString(`,"` + name + `":"` + strings.Repeat("Patient note text ", 12)[:200] + `"`)
		sb.WriteString(`,"plain_` + string(rune('a'+i)) + `":"` + strings.Repeat("routing data ", 15)[:180] + `"`)
	}
	sb.WriteString(`,"created_at":"2026-11-22T10:00:00Z"}`)
	return []byte(sb.String()), selectors(tb, sels...)
}

// BenchmarkRewrite4KB10Fields: the transformer alone on a 4 KB request with
// ten 200-byte fields selected, the edit appending a token-sized string.
func BenchmarkRewrite4KB10Fields(b *testing.B) {
	in, sels := doc4KB(b)
	runRewrite(b, in, NewRequestMatcher(sels), `"ephi:v1:org_a:0a1b2c3d:`+strings.Repeat("A", 300)+`"`)
}

// TestRewriteJSONPooledStateIsPrivate: walkers and decoders are pooled; a
// body's output never shares memory with a later body's, and bodies
// rewritten at once on many goroutines each get their own result.
func TestRewriteJSONPooledStateIsPrivate(t *testing.T) {
	m := NewMatcher(selectors(t, "$.body"))
	first, _, err := RewriteJSON([]byte(`{"body":"first","n\u00e4me":"x"}`), m, mark)
	if err != nil {
		t.Fatal(err)
	}
	want := string(first)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				in := `{"body":"g` + strconv.Itoa(g) + `-` + strconv.Itoa(i) + `","other":[1,2,{"k":"v"}]}`
				out, _, err := RewriteJSON([]byte(in), m, mark)
				if err != nil {
					t.Error(err)
					return
				}
				if w := `{"body":"S0:\"g` + strconv.Itoa(g) + `-` + strconv.Itoa(i) + `\"","other":[1,2,{"k":"v"}]}`; string(out) != w {
					t.Errorf("got %s, want %s", out, w)
					return
				}
			}
		})
	}
	wg.Wait()
	if string(first) != want {
		t.Errorf("an earlier output changed from %s to %s", want, first)
	}
}

// wide is an object of n members k0…k(n-1), then extra members.
func wide(n int, extra string) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + strconv.Itoa(i) + `":` + strconv.Itoa(i))
	}
	return b.String() + extra + "}"
}

// TestDuplicateNames: duplicate member names are refused in small and wide
// objects (found by scan and by index), through escapes, at any depth and
// inside a selected object; equal names in different objects are not
// duplicates.
func TestDuplicateNames(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		dup      bool
	}{
		{"small", `{"a":1,"b":2,"a":3}`, true},
		{"wide, last repeats first", wide(40, `,"k0":1`), true},
		{"wide, repeat at the switch to the index", wide(16, `,"k3":1`), true},
		{"wide, repeat right after the switch", wide(17, `,"k16":1`), true},
		{"wide, escaped repeat", wide(40, `,"\u006b7":1`), true},
		{"wide, no repeat", wide(200, `,"x":1`), false},
		{"nested wide objects with the same names", `{"a":` + wide(30, "") + `,"b":` + wide(30, "") + `,"c":[` + wide(20, "") + `,` + wide(20, "") + `]}`, false},
		{"parent repeat after a wide child", `{"p":1,"child":` + wide(30, "") + `,"p":2}`, true},
		{"wide parent repeat after wide children", wide(20, `,"c1":`+wide(20, "")+`,"c2":`+wide(20, "")+`,"k5":0`), true},
		{"inside a selected object", `{"body":{"a":1,"a":2}}`, true},
		{"inside a selected array", `{"body":[{"a":1,"a":2}]}`, true},
		{"case differs: not a duplicate", `{"a":1,"A":2}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := RewriteJSON([]byte(tc.in), NewMatcher(selectors(t, "$.body")), mark)
			if got := errors.Is(err, ErrMalformed); got != tc.dup {
				t.Fatalf("refused as malformed: %v (%v), want %v", got, err, tc.dup)
			}
			if jsontext.Value(tc.in).IsValid() == tc.dup {
				t.Fatalf("the test case disagrees with jsontext's own check")
			}
		})
	}
}

// BenchmarkRewriteWideObject: a 64 KB body of one object with 260
// members, the shape that costs the most names.
func BenchmarkRewriteWideObject(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"body":"x"`)
	for i := range 260 {
		sb.WriteString(`,"attr_` + strconv.Itoa(i) + `":"` + strings.Repeat("note ", 48) + `"`)
	}
	sb.WriteString(`}`)
	runRewrite(b, []byte(sb.String()), NewRequestMatcher(selectors(b, "$.body")), `"ephi:v1:org_a:0a1b2c3d:AAAA"`)
}
