// Package orgid holds the one rule for what an organization id may look like.
package orgid

import "fmt"

// MaxLen is the longest organization id accepted.
const MaxLen = 64

// Check reports whether id can name an organization: 1 to 64 characters of
// ASCII letters, digits, '_', '-' and '.', starting with a letter or digit.
// The rule keeps ids safe inside a ciphertext token (no ':') and as a file
// name in a keyring folder (no '/', no leading '.').
func Check(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("organization id is empty")
	case len(id) > MaxLen:
		return fmt.Errorf("organization id is longer than %d characters", MaxLen)
	case !Valid(id):
		return fmt.Errorf("organization id %q: only letters, digits, '_', '-' and '.' are allowed, starting with a letter or digit", id)
	}
	return nil
}

// Valid reports whether id follows the rule of Check, without allocating.
func Valid[T string | []byte](id T) bool {
	if len(id) == 0 || len(id) > MaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case (c == '_' || c == '-' || c == '.') && i > 0:
		default:
			return false
		}
	}
	return true
}
