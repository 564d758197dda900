package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"
)

// typical is a record as the proxy writes it for an allowed request.
func typical() *Record {
	r := &Record{
		Time:      time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC),
		RequestID: "01JDQ6V3Z8X5N2K4M7P9R1T3W6",
		Org:       "org_a",
		User:      "dr-grey",
		Role:      "clinician",
		ClientIP:  "203.0.113.7",
		Route:     "messages",
		Method:    "POST",
		Path:      "/v1/messages",
		Decision:  DecisionAllow,
		Status:    201, UpstreamStatus: 201,
		LatencyMS: 3.217,
	}
	r.AddField(ActionEncrypt, "$.body", "", 1)
	r.AddField(ActionEncrypt, "$.attachments[*].name", "", 3)
	return r
}

func TestAppendJSONMatchesMarshal(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	odd := []string{
		`quote " and backslash \`,
		"controls \x00\x01\b\f\n\r\t\x1f\x7f",
		"<script>&amp;</script>",
		"line\u2028paragraph\u2029end",
		"invalid \xff\xfe utf-8 \xc3 and a cut rune \xe2\x82",
		"non-ASCII: é 漢字 🩺",
		"\xed\xa0\x80 surrogate half",
	}
	tests := []struct {
		name string
		r    *Record
	}{
		{"empty", &Record{}},
		{"sample", sample()},
		{"typical", typical()},
		{"zone east, nanoseconds", &Record{Time: time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("X", 5*3600+30*60))}},
		{"zone west", &Record{Time: time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("Y", -8*3600))}},
		{"zone of zero offset", &Record{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("Z0", 0))}},
		{"local time", &Record{Time: time.Unix(1_800_000_000, 42).In(time.Local)}},
		{"monotonic reading", &Record{Time: time.Now()}},
		{"negative status", &Record{Time: at, Status: -1, UpstreamStatus: math.MinInt64}},
		{"large status", &Record{Time: at, Status: math.MaxInt64}},
		{"empty slices", &Record{Time: at, Actions: []string{}, Fields: []Field{}}},
		{"empty strings in slices", &Record{Time: at, Actions: []string{"", ""}, Fields: []Field{{}, {}}}},
		{"many fields and actions", func() *Record {
			r := &Record{Time: at, Decision: DecisionDeny, Reason: "not a reader"}
			for i, a := range []string{ActionEncrypt, ActionDecrypt, ActionMask, ActionDeny} {
				r.AddField(a, "$.a", "", i+1)
				r.AddField(a, "$.b[*]", "token of another organization", -i)
			}
			return r
		}()},
	}
	for i, s := range odd {
		tests = append(tests, struct {
			name string
			r    *Record
		}{"odd string " + string(rune('a'+i)), &Record{
			Time: at, RequestID: s, Org: s, User: s, Role: s, ClientIP: s, Route: s, Method: s, Path: s,
			Actions: []string{s, s}, Fields: []Field{{Action: s, Path: s, Count: 1, Reason: s}},
			Decision: s, Reason: s, BreakGlass: s, Integration: s, Scope: s, Recorded: []Value{{s, s}, {"n", s}},
		}})
	}
	for _, f := range []float64{0, math.Copysign(0, -1), 0.001, 1e21, 1e20, 1e-7, 1e-6, 9.999999e-7, 123.456, -123.456,
		1.0 / 3, 5e-324, math.MaxFloat64, -math.MaxFloat64, 1e100, 12345678901234567890} {
		tests = append(tests, struct {
			name string
			r    *Record
		}{"latency " + string(appendFloat(nil, f)), &Record{Time: at, LatencyMS: f}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := json.Marshal(tt.r)
			if err != nil {
				t.Fatal(err)
			}
			got := tt.r.AppendJSON(nil)
			if string(got) != string(want) {
				t.Errorf("got  %s\nwant %s", got, want)
			}
			// Appending keeps what dst held.
			if got := tt.r.AppendJSON([]byte("prefix")); string(got) != "prefix"+string(want) {
				t.Errorf("appended to a prefix: got %s", got)
			}
		})
	}
}

// TestAppendJSONCoversEveryField: with every field of Record and Field set,
// AppendJSON still writes what json.Marshal writes, so a field added to the
// struct and not to AppendJSON fails here.
func TestAppendJSONCoversEveryField(t *testing.T) {
	var r Record
	fill(reflect.ValueOf(&r).Elem())
	want, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.AppendJSON(nil); string(got) != string(want) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// fill sets every field of v to a value that is not zero.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Int:
		v.SetInt(7)
	case reflect.Float64:
		v.SetFloat(1.5)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Date(2026, 11, 22, 10, 0, 0, 1, time.UTC)))
			return
		}
		for i := range v.NumField() {
			fill(v.Field(i))
		}
	default:
		panic("fill: add a case for " + v.Type().String())
	}
}

// TestAppendJSONWhereMarshalFails: records json.Marshal refuses still make
// valid JSON, so the record is written.
func TestAppendJSONWhereMarshalFails(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		r    *Record
		want string // a part of the output
	}{
		{"NaN latency", &Record{Time: at, LatencyMS: math.NaN()}, `"latency_ms":null}`},
		{"infinite latency", &Record{Time: at, LatencyMS: math.Inf(1)}, `"latency_ms":null}`},
		{"negative infinite latency", &Record{Time: at, LatencyMS: math.Inf(-1)}, `"latency_ms":null}`},
		{"year 10000", &Record{Time: at.AddDate(8000, 0, 0)}, `"time":"10026-11-22T10:00:00Z"`},
		{"year -1", &Record{Time: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}, `"time":"-0001-01-01T00:00:00Z"`},
		{"offset of 24 hours", &Record{Time: at.In(time.FixedZone("far", 24*3600))}, `"time":"2026-11-23T10:00:00+24:00"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := json.Marshal(tt.r); err == nil {
				t.Fatal("json.Marshal succeeded; the case tests nothing")
			}
			got := tt.r.AppendJSON(nil)
			if !json.Valid(got) {
				t.Errorf("invalid JSON: %s", got)
			}
			if !bytes.Contains(got, []byte(tt.want)) {
				t.Errorf("got %s, want it to contain %s", got, tt.want)
			}
		})
	}
}

// FuzzAppendJSON: AppendJSON writes valid JSON, and what json.Marshal
// writes whenever json.Marshal succeeds.
func FuzzAppendJSON(f *testing.F) {
	f.Add("r1", "org_a", "/m", "not a reader", "$.body", 201, 0, 3.5, int64(1_795_000_000_123_456_789), 0)
	f.Add("\"\\<>&", "\u2028\u2029", "\xff\xc3", "\x00\x1f\x7f", "é漢🩺", 0, 502, 1e21, int64(0), -7*3600)
	f.Add("", "", "", "", "", -1, -1, 1e-7, int64(math.MinInt64), 90*60)
	f.Add("a", "b", "c", "d", "e", 1, 1, math.NaN(), int64(math.MaxInt64), 24*3600)
	f.Fuzz(func(t *testing.T, id, org, path, reason, field string, status, upstream int, latency float64, unixNano int64, offset int) {
		r := &Record{
			Time:      time.Unix(0, unixNano).In(time.FixedZone("", offset%(48*3600))),
			RequestID: id, Org: org, User: reason, Role: field, ClientIP: id, Route: org,
			UserAgent: reason, Policy: id, Method: reason, Path: path, Params: []Value{{Name: field, Value: path}}, Decision: field, Reason: reason, BreakGlass: path, Integration: org, Scope: field, Recorded: []Value{{Name: id, Value: reason}},
			Status: status, UpstreamStatus: upstream, LatencyMS: latency,
		}
		r.AddField(ActionEncrypt, field, reason, status)
		r.AddField(org, path, "", upstream)
		got := r.AppendJSON(nil)
		if !json.Valid(got) {
			t.Fatalf("invalid JSON: %s", got)
		}
		want, err := json.Marshal(r)
		if err != nil {
			return // NaN, infinities, times RFC 3339 cannot say: see TestAppendJSONWhereMarshalFails
		}
		if string(got) != string(want) {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	r := typical()
	buf := r.AppendJSON(nil)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendJSON(buf[:0])
	}
}

// BenchmarkMarshalReflect is what a record cost before AppendJSON.
func BenchmarkMarshalReflect(b *testing.B) {
	r := typical()
	buf, _ := json.Marshal(r)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(r); err != nil {
			b.Fatal(err)
		}
	}
}
