package codec

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func upper(_ int, v string) (string, error) { return "<" + strings.ToUpper(v) + ">", nil }

func TestRewriteForm(t *testing.T) {
	sels := selectors(t, "$.ignored", "form:Body", "form:Note")
	for _, tc := range []struct {
		name, in, want string
		counts         []int
	}{
		{"selected and kept", "From=%2B15551234&Body=hello+there&To=x", "From=%2B15551234&Body=%3CHELLO+THERE%3E&To=x", []int{0, 1, 0}},
		{"every occurrence", "Body=a&Body=b&Note=c", "Body=%3CA%3E&Body=%3CB%3E&Note=%3CC%3E", []int{0, 2, 1}},
		{"escaped key", "B%6Fdy=secret", "B%6Fdy=%3CSECRET%3E", []int{0, 1, 0}},
		{"empty pairs kept", "a=1&&Body=x&", "a=1&&Body=%3CX%3E&", []int{0, 1, 0}},
		{"key without value", "Body&b=2", "Body=%3C%3E&b=2", []int{0, 1, 0}},
		{"empty body", "", "", []int{0, 0, 0}},
		{"unselected bytes untouched", "z=%7e%7E+&y=%e2%82%ac", "z=%7e%7E+&y=%e2%82%ac", []int{0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, counts, err := RewriteForm([]byte(tc.in), sels, upper)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.want {
				t.Errorf("got  %s\nwant %s", out, tc.want)
			}
			for i := range tc.counts {
				if counts[i] != tc.counts[i] {
					t.Errorf("counts = %v, want %v", counts, tc.counts)
					break
				}
			}
		})
	}
}

func TestRewriteFormRefuses(t *testing.T) {
	sels := selectors(t, "form:Body")
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"semicolon separator", "a=1;Body=secret", ErrMalformed},
		{"bad escape in key", "B%zzdy=x", ErrMalformed},
		{"bad escape in value", "Body=%e", ErrMalformed},
		{"bad escape elsewhere", "x=%G1&Body=ok", ErrMalformed},
		{"invalid UTF-8", "Body=%ff", ErrMalformed},
		{"case variant", "body=x", ErrAmbiguousKey},
		{"case variant beside", "Body=x&BODY=y", ErrAmbiguousKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if out, _, err := RewriteForm([]byte(tc.in), sels, upper); !errors.Is(err, tc.want) {
				t.Errorf("got %v (out %q), want %v", err, out, tc.want)
			}
		})
	}
}

// FuzzRewriteForm: with no form selector the body comes back unchanged; with
// some, every field that a reading ties to a selected name comes back
// sealed (as many as counted), and every other field keeps its values.
func FuzzRewriteForm(f *testing.F) {
	for _, s := range []string{
		"Body=hi&To=%2B1555", "a=1&&b", "Body=a&Body=b", "B%6Fdy=x", "x=%zz", "a=1;b=2", "",
		"Body[]=x", "Body%5B0%5D=x", "+Body=x", "Body%00j=x", "Body.x=x", "Bo.dy=x", "Bo%5Bdy=x",
		"%5BBody%5D=x", "!Body=x", "To=ephi:v1", "body[]=x",
	} {
		f.Add(s)
	}
	sels := selectors(f, "form:Body", "form:Bo_dy")
	f.Fuzz(func(t *testing.T, in string) {
		out, _, err := RewriteForm([]byte(in), nil, upper)
		if err == nil && string(out) != in {
			t.Fatalf("no selectors changed %q to %q", in, out)
		}
		out, counts, err := RewriteForm([]byte(in), sels, func(_ int, v string) (string, error) { return "T", nil })
		if err != nil {
			return
		}
		before, err1 := url.ParseQuery(in)
		after, err2 := url.ParseQuery(string(out))
		if err1 != nil || err2 != nil {
			t.Fatalf("accepted %q (%v) → %q (%v)", in, err1, out, err2)
		}
		selected := func(name string) bool {
			rs := formNameReadings(name)
			return slices.Contains(rs, "Body") || slices.Contains(rs, "Bo_dy")
		}
		sealed := 0
		for _, pair := range strings.Split(string(out), "&") {
			if pair == "" {
				continue
			}
			k, v, _ := strings.Cut(pair, "=")
			name, err1 := url.QueryUnescape(k)
			val, err2 := url.QueryUnescape(v)
			if err1 != nil || err2 != nil {
				t.Fatalf("%q: output pair %q does not decode", in, pair)
			}
			// Independent of formNameReadings: what PHP, Rack and qs nest
			// under Body must never be left as sent.
			head, _, _ := strings.Cut(name, "\x00")
			head = strings.TrimLeft(strings.Trim(head, asciiSpace), "[].")
			rest, isBody := strings.CutPrefix(head, "Body")
			isBody = isBody && (rest == "" || strings.ContainsAny(rest[:1], "[]."))
			if selected(name) || isBody {
				if val != "T" {
					t.Fatalf("%q: field %q (read as a selected name) left unsealed", in, name)
				}
				sealed++
			}
		}
		if sealed != counts[0]+counts[1] {
			t.Fatalf("%q: %d fields sealed, counted %v", in, sealed, counts)
		}
		for k, vs := range before {
			if selected(k) {
				continue
			}
			if strings.Join(after[k], "\x00") != strings.Join(vs, "\x00") {
				t.Fatalf("%q: field %q changed", in, k)
			}
		}
	})
}

func TestRewriteFormRefusedField(t *testing.T) {
	for _, in := range []string{"Body=x&_method=DELETE", "_METHOD=put", "%5Fmethod=put"} {
		if _, _, err := RewriteForm([]byte(in), selectors(t, "form:Body"), upper, "_method"); !errors.Is(err, ErrRefusedKey) {
			t.Errorf("%s: got %v, want ErrRefusedKey", in, err)
		}
	}
}

// canary stands for PHI in a value: no refusal may repeat it.
const canary = "CANARY-PHI-form"

func TestRewriteFormNameReadings(t *testing.T) {
	sels := selectors(t, "$.ignored", "form:Body", "form:Bo_dy", "form:msg[body]")
	sealed := "=%3C" + strings.ToUpper(canary) + "%3E"
	for _, tc := range []struct {
		name, key string
		sel       int
	}{
		{"empty brackets", "Body[]", 1},
		{"index", "Body[0]", 1},
		{"key", "Body[x]", 1},
		{"nested keys", "Body[x][y]", 1},
		{"escaped brackets", "Body%5B%5D", 1},
		{"unclosed bracket", "Body[", 1},
		{"closing bracket", "Body]x", 1},
		{"leading plus", "+Body", 1},
		{"leading spaces", "%20%20Body", 1},
		{"trailing space", "Body%20", 1},
		{"leading tab", "%09Body", 1},
		{"trailing CRLF", "Body%0D%0A", 1},
		{"cut at NUL", "Body%00junk", 1},
		{"NUL then brackets", "Body%00[x]", 1},
		{"dot", "Body.x", 1},
		{"spaces and brackets", "+Body[]+", 1},
		{"leading brackets (Rack 2, qs)", "%5BBody%5D", 1},
		{"leading dot (qs allowDots)", ".Body", 1},
		{"default prefix (Spring)", "!Body", 1},
		{"exact", "Bo_dy", 2},
		{"PHP dot", "Bo.dy", 2},
		{"PHP space", "Bo+dy", 2},
		{"PHP escaped dot", "Bo%2Edy", 2},
		{"PHP unclosed bracket", "Bo%5Bdy", 2},
		{"PHP dot and brackets", "+Bo.dy[x]", 2},
		{"nested selector", "msg[body]", 3},
		{"under a nested selector", "msg[body][]", 3},
		{"after a nested selector", "msg[body]x", 3},
		{"nested selector padded", "+msg[body]%00", 3},
		{"nested, unclosed (Rack 2)", "msg%5Bbody", 3},
		{"nested, closing bracket only (Rack 2)", "msg%5Dbody", 3},
		{"nested, leading bracket (Rack 2, qs)", "%5Bmsg%5D%5Bbody%5D", 3},
		{"nested, stray bracket (Rack 2)", "msg%5D%5Bbody%5D", 3},
		{"nested, doubled brackets (Rack 2)", "msg%5B%5Bbody%5D%5D", 3},
		{"nested, dotted (qs allowDots)", "msg.body", 3},
		{"nested, dotted then index", "msg.body[0]", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.key + "=" + canary + "&To=x"
			out, counts, err := RewriteForm([]byte(in), sels, upper)
			if err != nil {
				t.Fatalf("got %v, want %s sealed", err, tc.key)
			}
			if want := tc.key + sealed + "&To=x"; string(out) != want {
				t.Errorf("got %s, want %s", out, want)
			}
			want := make([]int, len(sels))
			want[tc.sel] = 1
			if !slices.Equal(counts, want) {
				t.Errorf("got counts %v, want %v", counts, want)
			}
		})
	}
	// Names that no parser reads as a selected one pass as sent.
	for _, in := range []string{"x[Body]=v", "Bodyx=v", "xBody=v", "B_dy=v", "Bo-dy=v", "msg[other]=v", "msg=v", "Body_x=v", "x[msg][body]=v", "msgbody=v", "msg[bod]y=v"} {
		out, counts, err := RewriteForm([]byte(in), sels, upper)
		if err != nil || string(out) != in || slices.ContainsFunc(counts, func(n int) bool { return n > 0 }) {
			t.Errorf("%s: got %s %v %v, want it unchanged", in, out, counts, err)
		}
	}
}

func TestRewriteFormNameFirstSelector(t *testing.T) {
	for _, tc := range []struct {
		sels []string
		want []int
	}{
		{[]string{"form:Body", "form:Body.x"}, []int{1, 0}},
		{[]string{"form:Body.x", "form:Body"}, []int{1, 0}},
	} {
		t.Run(strings.Join(tc.sels, ","), func(t *testing.T) {
			_, counts, err := RewriteForm([]byte("Body.x=v"), selectors(t, tc.sels...), upper)
			if err != nil || !slices.Equal(counts, tc.want) {
				t.Errorf("got %v %v, want %v", counts, err, tc.want)
			}
		})
	}
}

func TestRewriteFormNameRefusals(t *testing.T) {
	sels := selectors(t, "form:Body")
	for _, tc := range []struct {
		name, key string
		want      error
	}{
		{"case and brackets", "body[]", ErrAmbiguousKey},
		{"case and space", "+BODY", ErrAmbiguousKey},
		{"case and dot", "BODY.x", ErrAmbiguousKey},
		{"case and NUL", "bOdY%00x", ErrAmbiguousKey},
		{"case and leading brackets", "%5Bbody%5D", ErrAmbiguousKey},
		{"_method with brackets", "_method[]", ErrRefusedKey},
		{"_method after a space", "+_method", ErrRefusedKey},
		{"_METHOD cut at NUL", "_METHOD%00x", ErrRefusedKey},
		{"_method with a dot", "_method.x", ErrRefusedKey},
		{"_method in leading brackets", "%5B_method%5D", ErrRefusedKey},
		{"_method PHP-mangled", "+.method", ErrRefusedKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := "To=x&" + tc.key + "=" + canary
			out, _, err := RewriteForm([]byte(in), sels, upper, "_method")
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v (out %q), want %v", err, out, tc.want)
			}
			if strings.Contains(err.Error(), "CANARY") {
				t.Errorf("the error names the value: %v", err)
			}
		})
	}
}

func TestRewriteFormPlantedTokens(t *testing.T) {
	sels := selectors(t, "form:Body")
	for _, tc := range []struct{ name, in string }{
		{"token value", "To=ephi:v1:org_a:00000001:AAAA"},
		{"token value escaped", "To=ephi%3Av1%3Aorg_a%3A00000001%3A" + canary},
		{"upper-case prefix", "To=EPHI:" + canary},
		{"percent escape spelled out", "To=ephi%253A" + canary},
		{"inside a longer value", "To=see+ephi:v1:" + canary + "+here"},
		{"beside a selected field", "Body=x&To=ephi:v1:" + canary},
		{"token name", "ephi:v1:org_a:00000001:AAAA=" + canary},
		{"escaped token name", "EPHI%3Ax=" + canary},
		{"token in a selected name", "Body[ephi:v1]=" + canary},
		{"token in a name read as selected", "+Body%00ephi:v1=" + canary},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := RewriteForm([]byte(tc.in), sels, upper)
			if !errors.Is(err, ErrPlantedToken) {
				t.Fatalf("got %v (out %q), want ErrPlantedToken", err, out)
			}
			if strings.Contains(err.Error(), "CANARY") || strings.Contains(err.Error(), "org_a") {
				t.Errorf("the error names the value: %v", err)
			}
		})
	}
	// A token in a selected value is sealed again; ordinary text passes.
	for _, tc := range []struct{ in, want string }{
		{"Body=ephi:v1:org_a:00000001:AAAA", "Body=%3CEPHI%3AV1%3AORG_A%3A00000001%3AAAAA%3E"},
		{"Body[]=EPHI%253A", "Body[]=%3CEPHI%253A%3E"},
		{"To=ephippium+zephir&Body=x", "To=ephippium+zephir&Body=%3CX%3E"},
	} {
		out, _, err := RewriteForm([]byte(tc.in), sels, upper)
		if err != nil || string(out) != tc.want {
			t.Errorf("%s: got %s %v, want %s", tc.in, out, err, tc.want)
		}
	}
}

// TestRewriteFormDottedSelector: a selector written with dots names the
// same field as its bracket spelling.
func TestRewriteFormDottedSelector(t *testing.T) {
	sels := selectors(t, "form:msg.body")
	for _, key := range []string{"msg.body", "msg[body]", "msg%5Bbody%5D%5B%5D", "%5Bmsg%5D.body"} {
		out, counts, err := RewriteForm([]byte(key+"=secret"), sels, upper)
		if err != nil || counts[0] != 1 || string(out) != key+"=%3CSECRET%3E" {
			t.Errorf("%s: got %s %v %v, want the value sealed", key, out, counts, err)
		}
	}
	if _, _, err := RewriteForm([]byte("MSG[body]=x"), sels, upper); !errors.Is(err, ErrAmbiguousKey) {
		t.Errorf("case variant of a dotted selector: got %v, want ErrAmbiguousKey", err)
	}
}

// TestRewriteFormNestedReadings: PHP mangles only the top-level name and
// keeps the nested keys; Spring strips quotes around map keys.
func TestRewriteFormNestedReadings(t *testing.T) {
	sels := selectors(t, "form:patient_note[text]", "form:msg[body]")
	for _, tc := range []struct {
		key string
		sel int
	}{
		{"patient.note[text]", 0},
		{"patient+note[text]", 0},
		{"+patient.note[text][]", 0},
		{"msg['body']", 1},
		{`msg["body"]`, 1},
		{"msg%5B%27body%27%5D", 1},
	} {
		out, counts, err := RewriteForm([]byte(tc.key+"=secret"), sels, upper)
		if err != nil || counts[tc.sel] != 1 || !strings.HasSuffix(string(out), "=%3CSECRET%3E") {
			t.Errorf("%s: got %s %v %v, want the value sealed", tc.key, out, counts, err)
		}
	}
}

// TestRewriteFormNestingLimit: a name nesting deeper than any parser reads
// is refused, not read (its readings would cost time with every level).
func TestRewriteFormNestingLimit(t *testing.T) {
	sels := selectors(t, "form:Body")
	ok := "a" + strings.Repeat("[a]", MaxFormNameNesting/2) + "=1"
	if _, _, err := RewriteForm([]byte(ok), sels, upper); err != nil {
		t.Errorf("%d separators: %v", MaxFormNameNesting, err)
	}
	for _, deep := range []string{
		"a" + strings.Repeat(".a", MaxFormNameNesting+1) + "=1",
		"Body" + strings.Repeat("[", MaxFormNameNesting+1) + "=" + canary,
		strings.Repeat("%5B%5D", 40) + "=1",
	} {
		_, _, err := RewriteForm([]byte(deep), sels, upper)
		if !errors.Is(err, ErrMalformed) || strings.Contains(err.Error(), canary) {
			t.Errorf("%.20s…: got %v, want ErrMalformed", deep, err)
		}
	}
}

// BenchmarkRewriteFormLongName: one long field name at the nesting limit;
// reading it stays linear in its length.
func BenchmarkRewriteFormLongName(b *testing.B) {
	sels := selectors(b, "form:Body", "form:msg[body]")
	seg := strings.Repeat("a", 16<<10)
	in := []byte(seg + strings.Repeat("."+seg, MaxFormNameNesting) + "=1")
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, _, err := RewriteForm(in, sels, upper); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRewriteFormPrefix: form:MediaUrl* takes every field whose name
// starts with MediaUrl (Twilio's MediaUrl0…MediaUrl9), under each name
// reading; a field that matches only in another letter case is refused,
// as for a plain name; other fields are untouched. form:* takes them all.
func TestRewriteFormPrefix(t *testing.T) {
	sels := selectors(t, "form:Body", "form:MediaUrl*")
	in := "NumMedia=3&Body=hi&MediaUrl0=u0&MediaUrl1=u1&MediaUrl10=u10&MediaContentType0=image%2Fjpeg"
	out, counts, err := RewriteForm([]byte(in), sels, upper)
	if err != nil {
		t.Fatal(err)
	}
	want := "NumMedia=3&Body=%3CHI%3E&MediaUrl0=%3CU0%3E&MediaUrl1=%3CU1%3E&MediaUrl10=%3CU10%3E&MediaContentType0=image%2Fjpeg"
	if string(out) != want || counts[0] != 1 || counts[1] != 3 {
		t.Errorf("got %s %v\nwant %s [1 3]", out, counts, want)
	}
	if _, _, err := RewriteForm([]byte("mediaurl2=u"), sels, upper); !errors.Is(err, ErrAmbiguousKey) {
		t.Errorf("a field that matches the prefix only by letter case: %v, want ErrAmbiguousKey", err)
	}
	if !QueryNameSelected("MediaUrl4", sels) || !QueryNameSelected("mediaurl4", sels) || QueryNameSelected("NumMedia", sels) {
		t.Error("QueryNameSelected does not follow the prefix")
	}
	all := selectors(t, "form:*")
	out, counts, err = RewriteForm([]byte("a=1&b=2"), all, upper)
	if err != nil || string(out) != "a=%3C1%3E&b=%3C2%3E" || counts[0] != 2 {
		t.Errorf("form:*: %s %v %v", out, counts, err)
	}
}
