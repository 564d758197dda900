// Package keys holds each organization's data keys (Tink AEAD keysets), wrapped
// by a key-encryption key, and the ciphertext token that replaces a protected value.
package keys
