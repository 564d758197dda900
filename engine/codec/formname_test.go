package codec

import (
	"slices"
	"testing"

	"github.com/phiguard/phiguard/policy"
)

func TestFormNameReadings(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		has      []string
		hasNot   []string
	}{
		{"plain", "Body", []string{"Body"}, nil},
		{"empty", "", nil, nil},
		{"brackets", "Body[x][y]", []string{"Body[x][y]", "Body", "Body[x]"}, []string{"x", "y"}},
		{"whitespace and NUL", " \t\n\v\f\rBody\r\n\x00 junk", []string{"Body"}, []string{"Body\r\n", "junk"}},
		{"space inside kept", "Bo dy", []string{"Bo dy", "Bo_dy"}, []string{"Bo"}},
		{"dot", "Bo.dy[]", []string{"Bo.dy", "Bo", "Bo_dy"}, []string{"dy"}},
		{"PHP unclosed bracket", "Bo[d.y", []string{"Bo", "Bo_d.y", "Bo_d_y"}, nil},
		{"PHP trailing space", "Bo_dy ", []string{"Bo_dy", "Bo_dy_"}, nil},
		{"PHP drops leading spaces only", "\tBo.dy", []string{"Bo_dy", "\tBo_dy"}, nil},
		{"leading brackets", "[[Body]][x]", []string{"Body"}, []string{"x"}},
		{"leading dot", ".Body.x", []string{"Body", "_Body_x"}, []string{"x"}},
		{"Spring default", "!Body[0]", []string{"Body", "Body[0]"}, nil},
		{"nested under another name", "x[Body]", []string{"x", "x[Body]"}, []string{"Body"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := formNameReadings(tc.in)
			if tc.in != "" && got[0] != tc.in {
				t.Errorf("got first reading %q, want the name %q", got[0], tc.in)
			}
			for _, w := range tc.has {
				if !slices.Contains(got, w) {
					t.Errorf("got %q, want it to hold %q", got, w)
				}
			}
			for _, w := range tc.hasNot {
				if slices.Contains(got, w) {
					t.Errorf("got %q, want it without %q", got, w)
				}
			}
			for i, r := range got {
				if r == "" || slices.Contains(got[:i], r) {
					t.Errorf("got %q: empty or repeated reading %q", got, r)
				}
			}
		})
	}
}

func TestQueryNameSelected(t *testing.T) {
	for _, tc := range []struct {
		sels []string
		name string
		want bool
	}{
		{[]string{"$.body"}, "body", true},
		{[]string{"$.body"}, "Body", true},
		{[]string{"$.body"}, "body[]", true},
		{[]string{"$.body"}, " body", true},
		{[]string{"$.body"}, "body.x", true},
		{[]string{"$.body"}, "page", false},
		{[]string{"$.body"}, "x[body]", false},
		{[]string{"$.msg.body"}, "msg[body]", true},
		{[]string{"$.msg.body"}, "msg", true},
		{[]string{"$.attachments[*].caption"}, "attachments[0][caption]", true},
		{[]string{"$..note"}, "x[note]", true},
		{[]string{"$..note"}, "a.b.NOTE", true},
		{[]string{"$..note"}, "notes", false},
		{[]string{"$.*"}, "anything", true},
		{[]string{"$[*].body"}, "anything", true},
		{[]string{"form:Body"}, "Body", true},
		{[]string{"form:Body"}, "Body[]", true},
		{[]string{"form:Body"}, "BODY", true},
		{[]string{"form:Body"}, "From", false},
		{[]string{"form:msg[body]"}, "msg.body", true},
		{[]string{"form:msg[body]"}, "msg", false},
		{[]string{"form:Body", "$.note"}, "note", true},
	} {
		var sels []policy.Selector
		for _, text := range tc.sels {
			s, err := policy.ParseSelector(text)
			if err != nil {
				t.Fatal(err)
			}
			sels = append(sels, s)
		}
		if got := QueryNameSelected(tc.name, sels); got != tc.want {
			t.Errorf("QueryNameSelected(%q, %v) = %v, want %v", tc.name, tc.sels, got, tc.want)
		}
	}
}
