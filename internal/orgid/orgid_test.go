package orgid

import "testing"

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"org_a", true},
		{"A1-b.c_d", true},
		{"", false},
		{"_org", false},
		{".hidden", false},
		{"org:a", false},
		{"org/a", false},
		{"org a", false},
		{"orgé", false},
		{string(make([]byte, 65)), false},
	} {
		err := Check(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
	}
}
