package kmstest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
)

// These tests talk to the server only through the real SDK client, so they
// prove the server speaks the protocol the SDK speaks.

// bounded is how long a test waits for something that should happen at
// once before it calls it a failure.
const bounded = 10 * time.Second

var ctxA = map[string]string{"org": "org_a", "purpose": "test"}

func newClient(t *testing.T) (*Server, *kms.Client) {
	t.Helper()
	s := New(t)
	return s, s.Client(t)
}

// wantErr fails the test unless err wraps an E, and returns it.
func wantErr[E error](t *testing.T, err error) E {
	t.Helper()
	var target E
	if !errors.As(err, &target) {
		t.Fatalf("got error %v (%T), want %T", err, err, target)
	}
	return target
}

// wantCode fails the test unless err wraps an API error with this code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	api := wantErr[smithy.APIError](t, err)
	if api.ErrorCode() != code {
		t.Fatalf("got error code %s (%v), want %s", api.ErrorCode(), err, code)
	}
}

func encrypt(t *testing.T, c *kms.Client, keyID string, pt []byte, ec map[string]string) []byte {
	t.Helper()
	out, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: pt, EncryptionContext: ec})
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	return out.CiphertextBlob
}

func decrypt(ctx context.Context, c *kms.Client, keyID string, blob []byte, ec map[string]string) ([]byte, error) {
	in := &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec}
	if keyID != "" {
		in.KeyId = aws.String(keyID)
	}
	out, err := c.Decrypt(ctx, in)
	if err != nil {
		return nil, err
	}
	return out.Plaintext, nil
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	s, c := newClient(t)
	id, arn := s.CreateKey(t, "round trip")
	pt := []byte("a patient's note")
	out, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: pt, EncryptionContext: ctxA})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.KeyId) != arn {
		t.Errorf("Encrypt KeyId: got %s, want %s", aws.ToString(out.KeyId), arn)
	}
	if bytes.Contains(out.CiphertextBlob, pt) {
		t.Errorf("ciphertext blob contains the plaintext")
	}
	for _, keyID := range []string{"", id, arn} {
		in := &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob, EncryptionContext: ctxA}
		if keyID != "" {
			in.KeyId = aws.String(keyID)
		}
		dec, err := c.Decrypt(t.Context(), in)
		if err != nil {
			t.Fatalf("Decrypt with KeyId %q: %v", keyID, err)
		}
		if !bytes.Equal(dec.Plaintext, pt) {
			t.Errorf("Decrypt with KeyId %q: got %q, want %q", keyID, dec.Plaintext, pt)
		}
		if aws.ToString(dec.KeyId) != arn {
			t.Errorf("Decrypt KeyId: got %s, want %s", aws.ToString(dec.KeyId), arn)
		}
	}
}

func TestEncryptionContextWithoutPairs(t *testing.T) {
	s, c := newClient(t)
	id, _ := s.CreateKey(t, "")
	blob := encrypt(t, c, id, []byte("x"), nil)
	// KMS treats an absent context and an empty one alike.
	if got, err := decrypt(t.Context(), c, "", blob, map[string]string{}); err != nil || string(got) != "x" {
		t.Fatalf("Decrypt with an empty context: got %q, %v; want x", got, err)
	}
}

func TestDecryptRefusesAnotherContext(t *testing.T) {
	s, c := newClient(t)
	id, _ := s.CreateKey(t, "")
	blob := encrypt(t, c, id, []byte("secret"), ctxA)
	for name, ec := range map[string]map[string]string{
		"missing":     nil,
		"other value": {"org": "org_b", "purpose": "test"},
		"fewer pairs": {"org": "org_a"},
		"extra pair":  {"org": "org_a", "purpose": "test", "x": "y"},
		"key renamed": {"Org": "org_a", "purpose": "test"},
		"split moved": {"org": "org_apurpose", "": "test"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decrypt(t.Context(), c, "", blob, ec)
			wantErr[*types.InvalidCiphertextException](t, err)
		})
	}
}

func TestDecryptRefusesAlteredBlob(t *testing.T) {
	s, c := newClient(t)
	id, _ := s.CreateKey(t, "")
	blob := encrypt(t, c, id, []byte("secret"), ctxA)
	for name, alter := range map[string]func([]byte) []byte{
		"last byte flipped": func(b []byte) []byte { b[len(b)-1] ^= 1; return b },
		"version changed":   func(b []byte) []byte { b[0] = 2; return b },
		"truncated":         func(b []byte) []byte { return b[:len(b)-1] },
		"header only":       func(b []byte) []byte { return b[:2+len(id)] },
		"not a blob":        func([]byte) []byte { return []byte("hello") },
		"unknown key id":    func(b []byte) []byte { b[2] ^= 1; return b },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decrypt(t.Context(), c, "", alter(bytes.Clone(blob)), ctxA)
			wantErr[*types.InvalidCiphertextException](t, err)
		})
	}
}

func TestDecryptWithAnotherKeyID(t *testing.T) {
	s, c := newClient(t)
	id, _ := s.CreateKey(t, "used")
	other, otherARN := s.CreateKey(t, "other")
	s.CreateAlias(t, "alias/other", other)
	blob := encrypt(t, c, id, []byte("secret"), ctxA)
	for _, keyID := range []string{other, otherARN, "alias/other"} {
		_, err := decrypt(t.Context(), c, keyID, blob, ctxA)
		wantErr[*types.IncorrectKeyException](t, err)
	}
	_, err := decrypt(t.Context(), c, "alias/nobody", blob, ctxA)
	wantErr[*types.NotFoundException](t, err)
}

func TestKeyReferences(t *testing.T) {
	s, c := newClient(t)
	id, arn := s.CreateKey(t, "")
	s.CreateAlias(t, "alias/phiguard/org_a", id)
	aliasARN := "arn:aws:kms:us-east-1:" + Account + ":alias/phiguard/org_a"
	for _, ref := range []string{id, arn, "alias/phiguard/org_a", aliasARN} {
		t.Run(ref, func(t *testing.T) {
			out, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(ref), Plaintext: []byte("x")})
			if err != nil {
				t.Fatal(err)
			}
			if aws.ToString(out.KeyId) != arn {
				t.Errorf("got KeyId %s, want %s", aws.ToString(out.KeyId), arn)
			}
			d, err := c.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String(ref)})
			if err != nil {
				t.Fatal(err)
			}
			if got := aws.ToString(d.KeyMetadata.KeyId); got != id {
				t.Errorf("DescribeKey: got key %s, want %s", got, id)
			}
		})
	}
	for _, ref := range []string{
		"11111111-2222-4333-8444-555555555555",
		"alias/nobody",
		"arn:aws:kms:us-east-1:" + Account + ":alias/nobody",
		"arn:aws:kms:eu-west-1:" + Account + ":key/" + id, // another region
		"arn:aws:kms:us-east-1:999999999999:key/" + id,    // another account
		"arn:aws:kms:us-east-1:" + Account + ":grant/" + id,
		"key/" + id,
	} {
		t.Run("unknown "+ref, func(t *testing.T) {
			_, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(ref), Plaintext: []byte("x")})
			wantErr[*types.NotFoundException](t, err)
			_, err = c.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String(ref)})
			wantErr[*types.NotFoundException](t, err)
		})
	}
}

func TestUnknownKeyEverywhere(t *testing.T) {
	_, c := newClient(t)
	unknown := aws.String("11111111-2222-4333-8444-555555555555")
	ctx := t.Context()
	for op, call := range map[string]func() error{
		"GenerateDataKey": func() error {
			_, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: unknown, KeySpec: types.DataKeySpecAes256})
			return err
		},
		"DisableKey": func() error { _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: unknown}); return err },
		"EnableKey":  func() error { _, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: unknown}); return err },
		"ScheduleKeyDeletion": func() error {
			_, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: unknown})
			return err
		},
		"CancelKeyDeletion": func() error {
			_, err := c.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: unknown})
			return err
		},
		"CreateAlias": func() error {
			_, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/a"), TargetKeyId: unknown})
			return err
		},
		"ListAliases": func() error { _, err := c.ListAliases(ctx, &kms.ListAliasesInput{KeyId: unknown}); return err },
	} {
		t.Run(op, func(t *testing.T) {
			wantErr[*types.NotFoundException](t, call())
		})
	}
}

func TestCreateKeyAndDescribeKey(t *testing.T) {
	s, c := newClient(t)
	before := time.Now().Truncate(time.Second)
	out, err := c.CreateKey(t.Context(), &kms.CreateKeyInput{Description: aws.String("org_a data keys")})
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	m := out.KeyMetadata
	id := aws.ToString(m.KeyId)
	if want := "arn:aws:kms:us-east-1:" + Account + ":key/" + id; aws.ToString(m.Arn) != want {
		t.Errorf("Arn: got %s, want %s", aws.ToString(m.Arn), want)
	}
	if len(id) != 36 || strings.Count(id, "-") != 4 {
		t.Errorf("KeyId %q is not a UUID", id)
	}
	if m.KeyState != types.KeyStateEnabled || !m.Enabled {
		t.Errorf("KeyState: got %s (enabled %v), want Enabled", m.KeyState, m.Enabled)
	}
	if created := aws.ToTime(m.CreationDate); created.Before(before) || created.After(after) {
		t.Errorf("CreationDate: got %v, want between %v and %v", created, before, after)
	}
	if m.KeySpec != types.KeySpecSymmetricDefault || m.KeyUsage != types.KeyUsageTypeEncryptDecrypt {
		t.Errorf("got KeySpec %s and KeyUsage %s, want a symmetric encryption key", m.KeySpec, m.KeyUsage)
	}
	if aws.ToString(m.Description) != "org_a data keys" || aws.ToString(m.AWSAccountId) != Account {
		t.Errorf("got Description %q and account %q", aws.ToString(m.Description), aws.ToString(m.AWSAccountId))
	}
	if s.Calls("CreateKey") != 1 {
		t.Errorf("Calls(CreateKey): got %d, want 1", s.Calls("CreateKey"))
	}

	// The key made through the protocol works like one made directly.
	blob := encrypt(t, c, id, []byte("x"), nil)
	if got, err := decrypt(t.Context(), c, "", blob, nil); err != nil || string(got) != "x" {
		t.Fatalf("Decrypt: got %q, %v", got, err)
	}
	d, err := c.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(d.KeyMetadata.Arn) != aws.ToString(m.Arn) || !aws.ToTime(d.KeyMetadata.CreationDate).Equal(aws.ToTime(m.CreationDate)) {
		t.Errorf("DescribeKey: got %+v, want the metadata CreateKey returned", d.KeyMetadata)
	}
}

func TestCreateKeyRefusesWhatItCannotMake(t *testing.T) {
	_, c := newClient(t)
	for name, in := range map[string]*kms.CreateKeyInput{
		"asymmetric":   {KeySpec: types.KeySpecRsa2048},
		"signing":      {KeyUsage: types.KeyUsageTypeSignVerify},
		"old spec":     {CustomerMasterKeySpec: types.CustomerMasterKeySpecRsa2048},
		"external":     {Origin: types.OriginTypeExternal},
		"multi-region": {MultiRegion: aws.Bool(true)},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.CreateKey(t.Context(), in)
			wantErr[*types.UnsupportedOperationException](t, err)
		})
	}
}

func TestGenerateDataKey(t *testing.T) {
	s, c := newClient(t)
	id, arn := s.CreateKey(t, "")
	for name, tc := range map[string]struct {
		in   kms.GenerateDataKeyInput
		size int
	}{
		"AES_256":  {kms.GenerateDataKeyInput{KeySpec: types.DataKeySpecAes256}, 32},
		"AES_128":  {kms.GenerateDataKeyInput{KeySpec: types.DataKeySpecAes128}, 16},
		"64 bytes": {kms.GenerateDataKeyInput{NumberOfBytes: aws.Int32(64)}, 64},
	} {
		t.Run(name, func(t *testing.T) {
			in := tc.in
			in.KeyId, in.EncryptionContext = aws.String(id), ctxA
			out, err := c.GenerateDataKey(t.Context(), &in)
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Plaintext) != tc.size {
				t.Errorf("got a %d-byte data key, want %d", len(out.Plaintext), tc.size)
			}
			if aws.ToString(out.KeyId) != arn {
				t.Errorf("KeyId: got %s, want %s", aws.ToString(out.KeyId), arn)
			}
			got, err := decrypt(t.Context(), c, "", out.CiphertextBlob, ctxA)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, out.Plaintext) {
				t.Errorf("Decrypt of the data key's blob: got %x, want %x", got, out.Plaintext)
			}
		})
	}
	a, _ := c.GenerateDataKey(t.Context(), &kms.GenerateDataKeyInput{KeyId: aws.String(id), KeySpec: types.DataKeySpecAes256})
	b, _ := c.GenerateDataKey(t.Context(), &kms.GenerateDataKeyInput{KeyId: aws.String(id), KeySpec: types.DataKeySpecAes256})
	if a == nil || b == nil || bytes.Equal(a.Plaintext, b.Plaintext) {
		t.Errorf("two data keys are equal (or missing)")
	}
}

func TestGenerateDataKeyWithoutPlaintext(t *testing.T) {
	s, c := newClient(t)
	id, _ := s.CreateKey(t, "")
	out, err := c.GenerateDataKeyWithoutPlaintext(t.Context(), &kms.GenerateDataKeyWithoutPlaintextInput{
		KeyId: aws.String(id), KeySpec: types.DataKeySpecAes256, EncryptionContext: ctxA,
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := decrypt(t.Context(), c, "", out.CiphertextBlob, ctxA)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 32 {
		t.Errorf("got a %d-byte data key, want 32", len(got))
	}
}

func TestReEncrypt(t *testing.T) {
	s, c := newClient(t)
	src, srcARN := s.CreateKey(t, "old")
	dst, dstARN := s.CreateKey(t, "new")
	ctxB := map[string]string{"org": "org_b"}
	blob := encrypt(t, c, src, []byte("secret"), ctxA)
	out, err := c.ReEncrypt(t.Context(), &kms.ReEncryptInput{
		CiphertextBlob:               blob,
		SourceEncryptionContext:      ctxA,
		DestinationKeyId:             aws.String(dst),
		DestinationEncryptionContext: ctxB,
	})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.KeyId) != dstARN || aws.ToString(out.SourceKeyId) != srcARN {
		t.Errorf("got KeyId %s from %s, want %s from %s", aws.ToString(out.KeyId), aws.ToString(out.SourceKeyId), dstARN, srcARN)
	}
	got, err := decrypt(t.Context(), c, dst, out.CiphertextBlob, ctxB)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "secret" {
		t.Errorf("got %q, want secret", got)
	}
	_, err = decrypt(t.Context(), c, "", out.CiphertextBlob, ctxA)
	wantErr[*types.InvalidCiphertextException](t, err)
	_, err = decrypt(t.Context(), c, src, out.CiphertextBlob, ctxB)
	wantErr[*types.IncorrectKeyException](t, err)

	for name, in := range map[string]*kms.ReEncryptInput{
		"wrong source context": {CiphertextBlob: blob, SourceEncryptionContext: ctxB, DestinationKeyId: aws.String(dst)},
		"wrong source key":     {CiphertextBlob: blob, SourceEncryptionContext: ctxA, SourceKeyId: aws.String(dst), DestinationKeyId: aws.String(dst)},
		"unknown destination":  {CiphertextBlob: blob, SourceEncryptionContext: ctxA, DestinationKeyId: aws.String("alias/nobody")},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.ReEncrypt(t.Context(), in)
			switch name {
			case "wrong source context":
				wantErr[*types.InvalidCiphertextException](t, err)
			case "wrong source key":
				wantErr[*types.IncorrectKeyException](t, err)
			default:
				wantErr[*types.NotFoundException](t, err)
			}
		})
	}
	s.DisableKey(dst)
	_, err = c.ReEncrypt(t.Context(), &kms.ReEncryptInput{CiphertextBlob: blob, SourceEncryptionContext: ctxA, DestinationKeyId: aws.String(dst)})
	wantErr[*types.DisabledException](t, err)
}

func TestDisabledKey(t *testing.T) {
	s, c := newClient(t)
	id, _ := s.CreateKey(t, "")
	blob := encrypt(t, c, id, []byte("secret"), ctxA)

	s.DisableKey(id)
	_, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
	wantErr[*types.DisabledException](t, err)
	_, err = decrypt(t.Context(), c, "", blob, ctxA)
	wantErr[*types.DisabledException](t, err)
	_, err = c.GenerateDataKey(t.Context(), &kms.GenerateDataKeyInput{KeyId: aws.String(id), KeySpec: types.DataKeySpecAes256})
	wantErr[*types.DisabledException](t, err)
	d, err := c.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String(id)})
	if err != nil || d.KeyMetadata.KeyState != types.KeyStateDisabled || d.KeyMetadata.Enabled {
		t.Fatalf("DescribeKey of a disabled key: got %+v, %v", d, err)
	}

	s.EnableKey(id)
	if got, err := decrypt(t.Context(), c, "", blob, ctxA); err != nil || string(got) != "secret" {
		t.Fatalf("Decrypt after EnableKey: got %q, %v", got, err)
	}

	// The same, through the protocol.
	if _, err := c.DisableKey(t.Context(), &kms.DisableKeyInput{KeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	_, err = decrypt(t.Context(), c, "", blob, ctxA)
	wantErr[*types.DisabledException](t, err)
	if _, err := c.EnableKey(t.Context(), &kms.EnableKeyInput{KeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	if got, err := decrypt(t.Context(), c, "", blob, ctxA); err != nil || string(got) != "secret" {
		t.Fatalf("Decrypt after the EnableKey operation: got %q, %v", got, err)
	}
}

func TestStateChangesTakeKeyIDsNotAliases(t *testing.T) {
	s, c := newClient(t)
	id, arn := s.CreateKey(t, "")
	s.CreateAlias(t, "alias/a", id)
	_, err := c.DisableKey(t.Context(), &kms.DisableKeyInput{KeyId: aws.String("alias/a")})
	wantErr[*types.NotFoundException](t, err)
	if _, err := c.DisableKey(t.Context(), &kms.DisableKeyInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatalf("DisableKey by ARN: %v", err)
	}
}

func TestPendingDeletion(t *testing.T) {
	s, c := newClient(t)
	id, arn := s.CreateKey(t, "")
	blob := encrypt(t, c, id, []byte("secret"), ctxA)
	before := time.Now()
	s.ScheduleDeletion(id)

	_, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
	wantErr[*types.KMSInvalidStateException](t, err)
	_, err = decrypt(t.Context(), c, "", blob, ctxA)
	wantErr[*types.KMSInvalidStateException](t, err)
	_, err = c.GenerateDataKey(t.Context(), &kms.GenerateDataKeyInput{KeyId: aws.String(id), KeySpec: types.DataKeySpecAes256})
	wantErr[*types.KMSInvalidStateException](t, err)
	for op, call := range map[string]func() error{
		"DisableKey": func() error {
			_, err := c.DisableKey(t.Context(), &kms.DisableKeyInput{KeyId: aws.String(id)})
			return err
		},
		"EnableKey": func() error {
			_, err := c.EnableKey(t.Context(), &kms.EnableKeyInput{KeyId: aws.String(id)})
			return err
		},
		"ScheduleKeyDeletion": func() error {
			_, err := c.ScheduleKeyDeletion(t.Context(), &kms.ScheduleKeyDeletionInput{KeyId: aws.String(id)})
			return err
		},
		"CreateAlias": func() error {
			_, err := c.CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String("alias/late"), TargetKeyId: aws.String(id)})
			return err
		},
	} {
		t.Run(op, func(t *testing.T) { wantErr[*types.KMSInvalidStateException](t, call()) })
	}

	d, err := c.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	m := d.KeyMetadata
	wantDeletion := before.Add(30 * 24 * time.Hour).Truncate(time.Second)
	if m.KeyState != types.KeyStatePendingDeletion || aws.ToTime(m.DeletionDate).Before(wantDeletion) || aws.ToInt32(m.PendingDeletionWindowInDays) != 30 {
		t.Errorf("DescribeKey: got state %s, deletion %v, window %d; want PendingDeletion on or after %v, 30 days",
			m.KeyState, aws.ToTime(m.DeletionDate), aws.ToInt32(m.PendingDeletionWindowInDays), wantDeletion)
	}

	cancel, err := c.CancelKeyDeletion(t.Context(), &kms.CancelKeyDeletionInput{KeyId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(cancel.KeyId) != arn {
		t.Errorf("CancelKeyDeletion KeyId: got %s, want %s", aws.ToString(cancel.KeyId), arn)
	}
	// As in KMS, a key whose deletion is cancelled is Disabled.
	_, err = decrypt(t.Context(), c, "", blob, ctxA)
	wantErr[*types.DisabledException](t, err)
	_, err = c.CancelKeyDeletion(t.Context(), &kms.CancelKeyDeletionInput{KeyId: aws.String(id)})
	wantErr[*types.KMSInvalidStateException](t, err)
	s.EnableKey(id)
	if got, err := decrypt(t.Context(), c, "", blob, ctxA); err != nil || string(got) != "secret" {
		t.Fatalf("Decrypt after cancel and enable: got %q, %v", got, err)
	}
}

func TestScheduleKeyDeletionOperation(t *testing.T) {
	s, c := newClient(t)
	id, arn := s.CreateKey(t, "")
	before := time.Now().Truncate(time.Second)
	out, err := c.ScheduleKeyDeletion(t.Context(), &kms.ScheduleKeyDeletionInput{KeyId: aws.String(id), PendingWindowInDays: aws.Int32(7)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.KeyId) != arn || out.KeyState != types.KeyStatePendingDeletion || aws.ToInt32(out.PendingWindowInDays) != 7 {
		t.Errorf("got KeyId %s, state %s, window %d; want %s, PendingDeletion, 7",
			aws.ToString(out.KeyId), out.KeyState, aws.ToInt32(out.PendingWindowInDays), arn)
	}
	if d := aws.ToTime(out.DeletionDate); d.Before(before.Add(7 * 24 * time.Hour)) {
		t.Errorf("DeletionDate: got %v, want 7 days from %v", d, before)
	}
	for _, days := range []int32{6, 31} {
		other, _ := s.CreateKey(t, "")
		_, err := c.ScheduleKeyDeletion(t.Context(), &kms.ScheduleKeyDeletionInput{KeyId: aws.String(other), PendingWindowInDays: aws.Int32(days)})
		wantCode(t, err, "ValidationException")
	}
}

func TestAliases(t *testing.T) {
	s, c := newClient(t)
	a, aARN := s.CreateKey(t, "a")
	b, _ := s.CreateKey(t, "b")
	for _, name := range []string{"alias/b1", "alias/b2", "alias/b3"} {
		if _, err := c.CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String(name), TargetKeyId: aws.String(b)}); err != nil {
			t.Fatalf("CreateAlias %s: %v", name, err)
		}
	}
	if _, err := c.CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String("alias/a"), TargetKeyId: aws.String(aARN)}); err != nil {
		t.Fatalf("CreateAlias by ARN: %v", err)
	}
	blob := encrypt(t, c, "alias/a", []byte("x"), nil)
	if _, err := decrypt(t.Context(), c, a, blob, nil); err != nil {
		t.Fatalf("Decrypt of a blob made through the alias with the key id: %v", err)
	}

	_, err := c.CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String("alias/a"), TargetKeyId: aws.String(b)})
	wantErr[*types.AlreadyExistsException](t, err)
	for _, name := range []string{"a", "alias/", "alias/with space", "alias/aws/reserved", "alias/" + strings.Repeat("x", 251)} {
		_, err := c.CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String(name), TargetKeyId: aws.String(b)})
		wantErr[*types.InvalidAliasNameException](t, err)
	}
	_, err = c.CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String("alias/via-alias"), TargetKeyId: aws.String("alias/a")})
	wantErr[*types.NotFoundException](t, err)

	// ListAliases pages by name, and filters by key.
	var names []string
	var marker *string
	for range 10 {
		out, err := c.ListAliases(t.Context(), &kms.ListAliasesInput{Limit: aws.Int32(3), Marker: marker})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range out.Aliases {
			names = append(names, aws.ToString(e.AliasName))
			if want := "arn:aws:kms:us-east-1:" + Account + ":" + aws.ToString(e.AliasName); aws.ToString(e.AliasArn) != want {
				t.Errorf("AliasArn: got %s, want %s", aws.ToString(e.AliasArn), want)
			}
		}
		if !out.Truncated {
			break
		}
		marker = out.NextMarker
	}
	if got, want := strings.Join(names, " "), "alias/a alias/b1 alias/b2 alias/b3"; got != want {
		t.Errorf("ListAliases: got %s, want %s", got, want)
	}
	out, err := c.ListAliases(t.Context(), &kms.ListAliasesInput{KeyId: aws.String(aARN)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Aliases) != 1 || aws.ToString(out.Aliases[0].TargetKeyId) != a || out.Truncated {
		t.Errorf("ListAliases for key a: got %+v, want alias/a only", out.Aliases)
	}
	_, err = c.ListAliases(t.Context(), &kms.ListAliasesInput{Marker: aws.String("alias/never-listed")})
	wantErr[*types.InvalidMarkerException](t, err)
	_, err = c.ListAliases(t.Context(), &kms.ListAliasesInput{Limit: aws.Int32(101)})
	wantCode(t, err, "ValidationException")
}

func TestUnimplementedOperation(t *testing.T) {
	s, c := newClient(t)
	_, err := c.ListKeys(t.Context(), &kms.ListKeysInput{})
	wantCode(t, err, "UnknownOperationException")
	if got := wantErr[*awshttp.ResponseError](t, err).HTTPStatusCode(); got != 400 {
		t.Errorf("got HTTP %d, want 400", got)
	}
	if s.Calls("ListKeys") != 1 {
		t.Errorf("Calls(ListKeys): got %d, want 1 (not retried)", s.Calls("ListKeys"))
	}
}

func TestUnsupportedRequestMembers(t *testing.T) {
	s, c := newClient(t)
	id, _ := s.CreateKey(t, "")
	_, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x"), DryRun: aws.Bool(true)})
	wantErr[*types.UnsupportedOperationException](t, err)
	_, err = c.Decrypt(t.Context(), &kms.DecryptInput{CiphertextBlob: []byte("x"), Recipient: &types.RecipientInfo{AttestationDocument: []byte("doc")}})
	wantErr[*types.UnsupportedOperationException](t, err)
	_, err = c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x"), EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256})
	wantErr[*types.InvalidKeyUsageException](t, err)
	_, err = c.ReEncrypt(t.Context(), &kms.ReEncryptInput{CiphertextBlob: []byte("x"), DestinationKeyId: aws.String(id), DestinationEncryptionAlgorithm: types.EncryptionAlgorithmSpecSm2pke})
	wantErr[*types.InvalidKeyUsageException](t, err)
	if _, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x"), EncryptionAlgorithm: types.EncryptionAlgorithmSpecSymmetricDefault}); err != nil {
		t.Errorf("Encrypt with SYMMETRIC_DEFAULT: %v", err)
	}
}

func TestPlaintextLimit(t *testing.T) {
	s, c := newClient(t)
	id, _ := s.CreateKey(t, "")
	blob := encrypt(t, c, id, make([]byte, 4096), nil)
	if got, err := decrypt(t.Context(), c, "", blob, nil); err != nil || len(got) != 4096 {
		t.Fatalf("Decrypt of 4096 bytes: got %d bytes, %v", len(got), err)
	}
	_, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: make([]byte, 4097)})
	wantCode(t, err, "ValidationException")
}

func TestThrottleRetriedThenSucceeds(t *testing.T) {
	s, c := newClient(t)
	id, _ := s.CreateKey(t, "")
	s.FailNext("Encrypt", 2, Throttle)
	if _, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")}); err != nil {
		t.Fatalf("Encrypt after two throttles with 3 attempts: %v", err)
	}
	if got := s.Calls("Encrypt"); got != 3 {
		t.Errorf("Calls(Encrypt): got %d, want 3", got)
	}
}

func TestThrottleGivesUpAfterMaxAttempts(t *testing.T) {
	s := New(t)
	c := s.Client(t, func(o *kms.Options) { o.Retryer = Retryer(3) })
	id, _ := s.CreateKey(t, "")
	s.FailNext("", 100, Throttle)
	_, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
	wantCode(t, err, "ThrottlingException")
	wantErr[*smithy.GenericAPIError](t, err)
	if got := wantErr[*retry.MaxAttemptsError](t, err).Attempt; got != 3 {
		t.Errorf("MaxAttemptsError.Attempt: got %d, want 3", got)
	}
	if got := s.Calls("Encrypt"); got != 3 {
		t.Errorf("Calls(Encrypt): got %d, want 3", got)
	}
}

func TestRetryMaxAttemptsOption(t *testing.T) {
	s := New(t)
	c := s.Client(t, func(o *kms.Options) { o.RetryMaxAttempts = 5 })
	id, _ := s.CreateKey(t, "")
	s.FailNext("Encrypt", 4, Throttle)
	if _, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")}); err != nil {
		t.Fatalf("Encrypt after four throttles with 5 attempts: %v", err)
	}
	if got := s.Calls("Encrypt"); got != 5 {
		t.Errorf("Calls(Encrypt): got %d, want 5", got)
	}
}

func TestInternalErrorRetried(t *testing.T) {
	s, c := newClient(t)
	id, _ := s.CreateKey(t, "")
	blob := encrypt(t, c, id, []byte("x"), nil)
	s.ResetCalls()
	s.FailNext("Decrypt", 1, InternalError)
	if _, err := decrypt(t.Context(), c, "", blob, nil); err != nil {
		t.Fatalf("Decrypt after one internal error: %v", err)
	}
	if got := s.Calls("Decrypt"); got != 2 {
		t.Errorf("Calls(Decrypt): got %d, want 2", got)
	}

	once := s.Client(t, func(o *kms.Options) { o.Retryer = Retryer(1) })
	s.FailNext("Decrypt", 1, InternalError)
	_, err := decrypt(t.Context(), once, "", blob, nil)
	wantErr[*types.KMSInternalException](t, err)
	if got := wantErr[*awshttp.ResponseError](t, err).HTTPStatusCode(); got != 500 {
		t.Errorf("got HTTP %d, want 500", got)
	}
}

func TestFailNextAppliesToItsOperationOnly(t *testing.T) {
	s := New(t)
	c := s.Client(t, func(o *kms.Options) { o.Retryer = Retryer(1) })
	id, _ := s.CreateKey(t, "")
	s.FailNext("Decrypt", 1, Throttle)
	blob := encrypt(t, c, id, []byte("x"), nil)
	_, err := decrypt(t.Context(), c, "", blob, nil)
	wantCode(t, err, "ThrottlingException")
	if _, err := decrypt(t.Context(), c, "", blob, nil); err != nil {
		t.Fatalf("second Decrypt: %v", err)
	}

	// Rules apply in the order they were set.
	s.FailNext("", 1, InternalError)
	s.FailNext("Encrypt", 1, Throttle)
	_, err = c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
	wantErr[*types.KMSInternalException](t, err)
	_, err = c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
	wantCode(t, err, "ThrottlingException")
	if _, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")}); err != nil {
		t.Fatalf("Encrypt once the failures are used up: %v", err)
	}
}

func TestHangEndsAtClientDeadline(t *testing.T) {
	s, c := newClient(t)
	id, _ := s.CreateKey(t, "")
	s.FailNext("Encrypt", 1, Hang)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
	if elapsed := time.Since(start); elapsed > bounded {
		t.Errorf("the client gave up after %v, want about 100ms", elapsed)
	}
	if got := s.Calls("Encrypt"); got != 1 {
		t.Errorf("Calls(Encrypt): got %d, want 1", got)
	}
	// The server is not stuck: the next request is answered.
	if _, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")}); err != nil {
		t.Fatalf("Encrypt after the hang: %v", err)
	}
}

func TestCloseEndsHungRequests(t *testing.T) {
	s, c := newClient(t)
	id, _ := s.CreateKey(t, "")
	s.FailNext("Decrypt", 1, Hang)
	s.SetLatency(time.Hour)
	results := make(chan error, 3)
	go func() {
		_, err := c.Encrypt(context.Background(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
		results <- err
	}()
	go func() {
		_, err := c.DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: aws.String(id)})
		results <- err
	}()
	waitFor(t, "both requests to arrive", func() bool { return s.Calls("") == 2 })
	s.SetLatency(0) // later requests go straight to the hang
	go func() {
		_, err := decrypt(context.Background(), c, "", []byte("x"), nil)
		results <- err
	}()
	waitFor(t, "the third request to arrive", func() bool { return s.Calls("Decrypt") == 1 })

	closed := make(chan struct{})
	go func() {
		s.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(bounded):
		t.Fatalf("Close did not return within %v with hung requests", bounded)
	}
	for range 3 {
		select {
		case err := <-results:
			if err == nil {
				t.Errorf("a request hung at Close succeeded, want an error")
			}
		case <-time.After(bounded):
			t.Fatalf("a hung request did not end within %v of Close", bounded)
		}
	}
}

// waitFor polls cond until it holds, failing the test after bounded.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bounded)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSetDown(t *testing.T) {
	s, c := newClient(t)
	id, _ := s.CreateKey(t, "")
	s.SetDown(true)
	_, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
	wantCode(t, err, "ServiceUnavailableException")
	if got := wantErr[*awshttp.ResponseError](t, err).HTTPStatusCode(); got != 503 {
		t.Errorf("got HTTP %d, want 503", got)
	}
	if got := s.Calls("Encrypt"); got != 3 {
		t.Errorf("Calls(Encrypt): got %d, want 3 (503 is retried)", got)
	}
	s.SetDown(false)
	if _, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")}); err != nil {
		t.Fatalf("Encrypt once up again: %v", err)
	}
}

func TestSetLatency(t *testing.T) {
	s, c := newClient(t)
	id, _ := s.CreateKey(t, "")
	const d = 50 * time.Millisecond
	s.SetLatency(d)
	start := time.Now()
	if _, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed < d {
		t.Errorf("Encrypt took %v, want at least %v", elapsed, d)
	}

	// The wait ends with the request.
	s.SetLatency(time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(id), Plaintext: []byte("x")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
}

func TestCalls(t *testing.T) {
	s, c := newClient(t)
	id, _ := s.CreateKey(t, "") // direct: not counted
	s.CreateAlias(t, "alias/a", id)
	s.DisableKey(id)
	s.EnableKey(id)
	if got := s.Calls(""); got != 0 {
		t.Fatalf("Calls after direct changes: got %d, want 0", got)
	}
	blob := encrypt(t, c, id, []byte("x"), nil)
	encrypt(t, c, id, []byte("y"), nil)
	_, _ = decrypt(t.Context(), c, "", blob, ctxA) // refused: counted all the same
	for op, want := range map[string]int{"Encrypt": 2, "Decrypt": 1, "DescribeKey": 0, "": 3} {
		if got := s.Calls(op); got != want {
			t.Errorf("Calls(%q): got %d, want %d", op, got, want)
		}
	}
	s.ResetCalls()
	if got := s.Calls(""); got != 0 || s.Calls("Encrypt") != 0 {
		t.Errorf("after ResetCalls: got %d calls, want 0", got)
	}
}

func TestConfigOptions(t *testing.T) {
	s := New(t)
	id, _ := s.CreateKey(t, "")
	// Nothing from the environment's credentials or shared files leaks in.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret-from-env")
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent/kmstest/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/kmstest/credentials")
	cfg, err := config.LoadDefaultConfig(t.Context(), append(s.ConfigOptions(), config.WithBaseEndpoint(s.URL()))...)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(t.Context())
	if err != nil || creds.AccessKeyID != "AKIDTEST" || cfg.Region != s.Region() {
		t.Fatalf("got credentials %q (%v) and region %s, want AKIDTEST and %s", creds.AccessKeyID, err, cfg.Region, s.Region())
	}
	c := kms.NewFromConfig(cfg)
	blob := encrypt(t, c, id, []byte("x"), ctxA)
	if got, err := decrypt(t.Context(), c, "", blob, ctxA); err != nil || string(got) != "x" {
		t.Fatalf("Decrypt: got %q, %v", got, err)
	}

	// Its HTTP client, too, dials loopback addresses only.
	cfg, err = config.LoadDefaultConfig(t.Context(), append(s.ConfigOptions(), config.WithBaseEndpoint("http://192.0.2.1:80"), config.WithRetryMaxAttempts(1))...)
	if err != nil {
		t.Fatal(err)
	}
	_, err = kms.NewFromConfig(cfg).DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String(id)})
	if err == nil || !strings.Contains(err.Error(), "only loopback addresses are allowed") {
		t.Errorf("DescribeKey at a non-loopback address: got %v, want a refusal to dial", err)
	}
}

func TestLoopbackOnly(t *testing.T) {
	s := New(t)
	c := s.Client(t, func(o *kms.Options) {
		o.BaseEndpoint = aws.String("http://192.0.2.1:80") // TEST-NET-1
		o.Retryer = Retryer(1)
	})
	_, err := c.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String("k")})
	if err == nil || !strings.Contains(err.Error(), "only loopback addresses are allowed") {
		t.Errorf("DescribeKey at a non-loopback address: got %v, want a refusal to dial", err)
	}
}

func TestOnlyLoopback(t *testing.T) {
	for address, ok := range map[string]bool{
		"127.0.0.1:80":     true,
		"127.1.2.3:443":    true,
		"[::1]:80":         true,
		"192.0.2.1:80":     false,
		"[2001:db8::1]:80": false,
		"0.0.0.0:80":       false,
		"localhost:80":     false, // not resolved: the dialer passes addresses
		"127.0.0.1":        false, // no port
	} {
		if err := onlyLoopback("tcp", address, nil); (err == nil) != ok {
			t.Errorf("onlyLoopback(%s): got %v, want allowed %v", address, err, ok)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	s, c := newClient(t)
	id, _ := s.CreateKey(t, "")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 10 {
				pt := []byte{byte(i), byte(j)}
				out, err := c.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(id), Plaintext: pt})
				if err != nil {
					t.Errorf("Encrypt: %v", err)
					return
				}
				got, err := decrypt(t.Context(), c, id, out.CiphertextBlob, nil)
				if err != nil || !bytes.Equal(got, pt) {
					t.Errorf("Decrypt: got %x, %v; want %x", got, err, pt)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			s.FailNext("DescribeKey", 1, Throttle)
			s.SetLatency(time.Microsecond)
			if _, err := s.createKey("more"); err != nil {
				t.Errorf("createKey: %v", err)
			}
			_ = s.Calls("")
		}
		s.SetLatency(0)
	})
	wg.Wait()
	if got := s.Calls("Encrypt"); got != 80 {
		t.Errorf("Calls(Encrypt): got %d, want 80", got)
	}
}
