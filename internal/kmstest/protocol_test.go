package kmstest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// These tests send requests the SDK would never send, to reach the
// server's refusals directly.

const validAuth = "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/kms/aws4_request, " +
	"SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0123abcd"

type rawResponse struct {
	status     int
	header     string // X-Amzn-ErrorType
	errType    string // the body's __type
	message    string
	body       []byte
	contentTyp string
}

// post sends a request shaped like the SDK's (signature included, though
// not a valid one) for op, after edit changes it.
func post(t *testing.T, s *Server, op, body string, edit func(*http.Request)) rawResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL()+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Amz-Target", targetPrefix+op)
	req.Header.Set("X-Amz-Date", "20260101T000000Z")
	req.Header.Set("Authorization", validAuth)
	if edit != nil {
		edit(req)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) rawResponse {
	t.Helper()
	hc := LoopbackHTTPClient()
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return readResponse(t, resp)
}

func readResponse(t *testing.T, resp *http.Response) rawResponse {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := rawResponse{status: resp.StatusCode, header: resp.Header.Get("X-Amzn-ErrorType"), body: b, contentTyp: resp.Header.Get("Content-Type")}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("error body %q is not JSON: %v", b, err)
		}
		r.errType, r.message = e.Type, e.Message
	}
	return r
}

// wantRefusal fails the test unless r is an error answer named code with
// this status, named alike in the header and the body.
func (r rawResponse) wantRefusal(t *testing.T, status int, code string) {
	t.Helper()
	if r.status != status || r.errType != code || r.header != code {
		t.Errorf("got HTTP %d, __type %q, X-Amzn-ErrorType %q (%s); want %d %s", r.status, r.errType, r.header, r.message, status, code)
	}
	if r.contentTyp != contentType {
		t.Errorf("error Content-Type: got %q, want %s", r.contentTyp, contentType)
	}
}

func TestUnsignedRequestRefused(t *testing.T) {
	s := New(t)
	id, _ := s.CreateKey(t, "")
	hc := LoopbackHTTPClient()
	defer hc.CloseIdleConnections()
	resp, err := hc.Post(s.URL(), contentType, strings.NewReader(`{"KeyId":"`+id+`","Plaintext":"eA=="}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	readResponse(t, resp).wantRefusal(t, http.StatusForbidden, "MissingAuthenticationTokenException")

	// Refused even when it names the operation.
	post(t, s, "Encrypt", `{"KeyId":"`+id+`","Plaintext":"eA=="}`, func(r *http.Request) {
		r.Header.Del("Authorization")
	}).wantRefusal(t, http.StatusForbidden, "MissingAuthenticationTokenException")
	if got := s.Calls(""); got != 2 {
		t.Errorf("Calls: got %d, want 2 (refused requests count)", got)
	}
}

func TestRequestChecks(t *testing.T) {
	s := New(t)
	id, _ := s.CreateKey(t, "")
	encryptBody := `{"KeyId":"` + id + `","Plaintext":"eA=="}`
	setHeader := func(name, value string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set(name, value) }
	}
	for _, tc := range []struct {
		name   string
		body   string
		edit   func(*http.Request)
		status int
		code   string // "" for success
	}{
		{"as the SDK sends it", encryptBody, nil, 200, ""},
		{"content type with a parameter", encryptBody, setHeader("Content-Type", contentType+"; charset=utf-8"), 200, ""},
		{"GET", "", func(r *http.Request) { r.Method = http.MethodGet }, 400, "UnknownOperationException"},
		{"another path", encryptBody, func(r *http.Request) { r.URL.Path = "/v1/encrypt" }, 400, "UnknownOperationException"},
		{"another algorithm", encryptBody, setHeader("Authorization", "Basic QUtJRDpTRUNSRVQ="), 400, "IncompleteSignatureException"},
		{"no signature", encryptBody, setHeader("Authorization", strings.Split(validAuth, ", Signature")[0]), 400, "IncompleteSignatureException"},
		{"no signed headers", encryptBody, setHeader("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/kms/aws4_request, Signature=00"), 400, "IncompleteSignatureException"},
		{"no credential", encryptBody, setHeader("Authorization", "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00"), 400, "IncompleteSignatureException"},
		{"no date", encryptBody, func(r *http.Request) { r.Header.Del("X-Amz-Date") }, 400, "IncompleteSignatureException"},
		{"short scope", encryptBody, setHeader("Authorization", strings.Replace(validAuth, "/us-east-1", "", 1)), 400, "IncompleteSignatureException"},
		{"scope not aws4_request", encryptBody, setHeader("Authorization", strings.Replace(validAuth, "aws4_request", "aws5_request", 1)), 400, "IncompleteSignatureException"},
		{"signed for s3", encryptBody, setHeader("Authorization", strings.Replace(validAuth, "/kms/", "/s3/", 1)), 403, "InvalidSignatureException"},
		{"signed for another region", encryptBody, setHeader("Authorization", strings.Replace(validAuth, "us-east-1", "eu-west-1", 1)), 403, "InvalidSignatureException"},
		{"JSON 1.0 content type", encryptBody, setHeader("Content-Type", "application/x-amz-json-1.0"), 400, "SerializationException"},
		{"plain JSON content type", encryptBody, setHeader("Content-Type", "application/json"), 400, "SerializationException"},
		{"no content type", encryptBody, func(r *http.Request) { r.Header.Del("Content-Type") }, 400, "SerializationException"},
		{"no target", encryptBody, func(r *http.Request) { r.Header.Del("X-Amz-Target") }, 400, "UnknownOperationException"},
		{"another service's target", encryptBody, setHeader("X-Amz-Target", "DynamoDB_20120810.Encrypt"), 400, "UnknownOperationException"},
		{"target without the service", encryptBody, setHeader("X-Amz-Target", "Encrypt"), 400, "UnknownOperationException"},
		{"unknown operation", encryptBody, setHeader("X-Amz-Target", "TrentService.Sign"), 400, "UnknownOperationException"},
		{"body too large", `{"KeyId":"` + strings.Repeat("x", maxBody) + `"}`, nil, 400, "SerializationException"},
		{"body not JSON", `KeyId=x`, nil, 400, "SerializationException"},
		{"empty body", ``, nil, 400, "SerializationException"},
		{"trailing data", encryptBody + `{}`, nil, 400, "SerializationException"},
		{"member of the wrong type", `{"KeyId":5,"Plaintext":"eA=="}`, nil, 400, "SerializationException"},
		{"blob not base64", `{"KeyId":"` + id + `","Plaintext":"not base64!"}`, nil, 400, "SerializationException"},
		{"unsupported member of the wrong type", `{"DryRun":"yes"}`, nil, 400, "SerializationException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, s, "Encrypt", tc.body, tc.edit)
			if tc.code == "" {
				if r.status != http.StatusOK || r.contentTyp != contentType {
					t.Errorf("got HTTP %d (%s) %s, want 200", r.status, r.contentTyp, r.body)
				}
				return
			}
			r.wantRefusal(t, tc.status, tc.code)
		})
	}
}

func TestValidation(t *testing.T) {
	s := New(t)
	id, _ := s.CreateKey(t, "")
	k := `"KeyId":"` + id + `"`
	for _, tc := range []struct {
		op, body string
	}{
		{"Encrypt", `{"Plaintext":"eA=="}`},
		{"Encrypt", `{` + k + `}`},
		{"Encrypt", `{` + k + `,"Plaintext":""}`},
		{"Decrypt", `{}`},
		{"Decrypt", `{"CiphertextBlob":""}`},
		{"ReEncrypt", `{"DestinationKeyId":"` + id + `"}`},
		{"ReEncrypt", `{"CiphertextBlob":"eA=="}`},
		{"GenerateDataKey", `{"KeySpec":"AES_256"}`},
		{"GenerateDataKey", `{` + k + `}`},
		{"GenerateDataKey", `{` + k + `,"KeySpec":"AES_256","NumberOfBytes":32}`},
		{"GenerateDataKey", `{` + k + `,"KeySpec":"AES_512"}`},
		{"GenerateDataKey", `{` + k + `,"NumberOfBytes":0}`},
		{"GenerateDataKey", `{` + k + `,"NumberOfBytes":1025}`},
		{"GenerateDataKeyWithoutPlaintext", `{` + k + `}`},
		{"DescribeKey", `{}`},
		{"DisableKey", `{}`},
		{"EnableKey", `{}`},
		{"ScheduleKeyDeletion", `{}`},
		{"ScheduleKeyDeletion", `{` + k + `,"PendingWindowInDays":0}`},
		{"CancelKeyDeletion", `{}`},
		{"CreateAlias", `{"AliasName":"alias/x"}`},
		{"ListAliases", `{"Limit":0}`},
	} {
		t.Run(tc.op+" "+tc.body, func(t *testing.T) {
			post(t, s, tc.op, tc.body, nil).wantRefusal(t, http.StatusBadRequest, "ValidationException")
		})
	}
	// None of the refused requests changed the key.
	if k, err := s.lookup(id, false); err != nil || k.state != stateEnabled {
		t.Errorf("key after refused requests: state %q, %v; want Enabled", k.state, err)
	}
}

func TestDataKeySizeLimits(t *testing.T) {
	s := New(t)
	id, _ := s.CreateKey(t, "")
	for _, n := range []int{1, maxDataKeyBytes} {
		r := post(t, s, "GenerateDataKey", `{"KeyId":"`+id+`","NumberOfBytes":`+jsonInt(n)+`}`, nil)
		var out struct{ Plaintext []byte }
		if err := json.Unmarshal(r.body, &out); r.status != http.StatusOK || err != nil || len(out.Plaintext) != n {
			t.Errorf("NumberOfBytes %d: got HTTP %d, %d bytes (%v)", n, r.status, len(out.Plaintext), err)
		}
	}
}

func jsonInt(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestErrorAnswersCarryARequestID(t *testing.T) {
	s := New(t)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL(), strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	hc := LoopbackHTTPClient()
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if id := resp.Header.Get("X-Amzn-Requestid"); len(id) != 36 {
		t.Errorf("X-Amzn-Requestid: got %q, want a UUID", id)
	}
}

// recorder is a testing.TB that records Errorf and Fatalf instead of
// failing, to test how the server reports misuse.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, format)
}

func (r *recorder) Fatalf(format string, args ...any) { r.Errorf(format, args...) }

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errs)
}

func TestMisuseFailsTheTest(t *testing.T) {
	for name, misuse := range map[string]func(rec *recorder, s *Server, keyID string){
		"FailNext unknown operation": func(_ *recorder, s *Server, _ string) { s.FailNext("Encrpyt", 1, Throttle) },
		"FailNext unknown failure":   func(_ *recorder, s *Server, _ string) { s.FailNext("", 1, Failure(0)) },
		"DisableKey unknown key":     func(_ *recorder, s *Server, _ string) { s.DisableKey("no-such-key") },
		"EnableKey by alias":         func(_ *recorder, s *Server, _ string) { s.EnableKey("alias/a") },
		"ScheduleDeletion twice": func(_ *recorder, s *Server, keyID string) {
			s.ScheduleDeletion(keyID)
			s.ScheduleDeletion(keyID)
		},
		"DisableKey pending deletion": func(_ *recorder, s *Server, keyID string) {
			s.ScheduleDeletion(keyID)
			s.DisableKey(keyID)
		},
		"CreateAlias bad name":    func(rec *recorder, s *Server, keyID string) { s.CreateAlias(rec, "a", keyID) },
		"CreateAlias taken":       func(rec *recorder, s *Server, keyID string) { s.CreateAlias(rec, "alias/a", keyID) },
		"CreateAlias unknown key": func(rec *recorder, s *Server, _ string) { s.CreateAlias(rec, "alias/b", "no-such-key") },
		"CreateAlias pending key": func(rec *recorder, s *Server, keyID string) {
			s.ScheduleDeletion(keyID)
			s.CreateAlias(rec, "alias/b", keyID)
		},
		"EnableKey pending key":      func(_ *recorder, s *Server, keyID string) { s.ScheduleDeletion(keyID); s.EnableKey(keyID) },
		"FailNext failure past Hang": func(_ *recorder, s *Server, _ string) { s.FailNext("Encrypt", 1, Hang+1) },
	} {
		t.Run(name, func(t *testing.T) {
			rec := &recorder{TB: t}
			s := New(rec)
			keyID, _ := s.CreateKey(rec, "")
			s.CreateAlias(rec, "alias/a", keyID)
			if n := rec.count(); n != 0 {
				t.Fatalf("setup reported %d errors", n)
			}
			misuse(rec, s, keyID)
			if rec.count() != 1 {
				t.Errorf("got %d reports, want 1", rec.count())
			}
		})
	}
}

func TestFailNextNothing(t *testing.T) {
	rec := &recorder{TB: t}
	s := New(rec)
	id, _ := s.CreateKey(rec, "")
	s.FailNext("Encrypt", 0, Throttle)
	s.FailNext("", -1, Hang)
	if r := post(t, s, "Encrypt", `{"KeyId":"`+id+`","Plaintext":"eA=="}`, nil); r.status != http.StatusOK {
		t.Errorf("Encrypt after FailNext with n ≤ 0: got HTTP %d %s", r.status, r.body)
	}
	if rec.count() != 0 {
		t.Errorf("FailNext with n ≤ 0 reported %v", rec.errs)
	}
}

func TestInternalErrorAnswer(t *testing.T) {
	rec := &recorder{TB: t}
	s := New(rec)
	w := httptest.NewRecorder()
	s.writeError(w, errors.New("boom"))
	r := readResponse(t, w.Result())
	r.wantRefusal(t, http.StatusInternalServerError, "KMSInternalException")
	if strings.Contains(r.message, "boom") {
		t.Errorf("the answer %q carries the internal error's text", r.message)
	}
	if rec.count() != 1 {
		t.Errorf("got %d reports of the internal error, want 1", rec.count())
	}
}

func TestAbortWithoutHijack(t *testing.T) {
	s := New(t)
	w := httptest.NewRecorder() // cannot be hijacked
	s.abort(w)
	readResponse(t, w.Result()).wantRefusal(t, http.StatusServiceUnavailable, "ServiceUnavailableException")
}

func TestFailureString(t *testing.T) {
	for f, want := range map[Failure]string{Throttle: "Throttle", InternalError: "InternalError", Hang: "Hang", 7: "Failure(7)"} {
		if got := f.String(); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

func TestAssociatedDataIsUnambiguous(t *testing.T) {
	contexts := []map[string]string{
		nil,
		{"a": "b"},
		{"a": "bc"},
		{"ab": "c"},
		{"a": "", "b": ""},
		{"": "ab"},
		{"a": "b", "c": "d"},
		{"a": "b\x00\x00\x00\x01c"},
	}
	seen := map[string]int{}
	for i, ec := range contexts {
		ad := string(associatedData("key", ec))
		if j, ok := seen[ad]; ok {
			t.Errorf("contexts %v and %v encode alike", contexts[j], ec)
		}
		seen[ad] = i
	}
	if bytes.Equal(associatedData("key1", nil), associatedData("key2", nil)) {
		t.Errorf("two key ids encode alike")
	}
}

// FuzzOpen checks that no blob but the one Encrypt made opens, and that
// every other is refused as InvalidCiphertextException.
func FuzzOpen(f *testing.F) {
	s := New(f)
	id, _ := s.CreateKey(f, "")
	k, err := s.lookup(id, false)
	if err != nil {
		f.Fatal(err)
	}
	ec := map[string]string{"org": "org_a"}
	valid, err := seal(k, []byte("secret"), ec)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:2+len(id)])
	f.Add([]byte{blobVersion, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, blob []byte) {
		_, pt, err := s.open(blob, "", ec)
		if bytes.Equal(blob, valid) {
			if err != nil || string(pt) != "secret" {
				t.Fatalf("the valid blob: got %q, %v", pt, err)
			}
			return
		}
		var e *apiError
		if !errors.As(err, &e) || e.code != "InvalidCiphertextException" {
			t.Fatalf("blob %x: got %q, %v; want InvalidCiphertextException", blob, pt, err)
		}
	})
}
