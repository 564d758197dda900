package codec

import "errors"

// ErrPlantedToken: a request carries a phiguard token where phiguard does
// not seal it. Only phiguard writes tokens; one arriving from outside could
// be stored where a read route decrypts it.
var ErrPlantedToken = errors.New("phiguard token in a request")

// HasTokenMarker reports whether s holds something an app could turn into a
// phiguard token: "ephi" (any letter case) followed by ':' or by the start
// of an escape that may spell one ('%' for %3A, '\' for \u003a or \x3a, '&'
// for &#58;). It is deliberately wider than the token grammar: an app may
// trim, unescape or re-case what it stores.
func HasTokenMarker[T string | []byte](s T) bool {
	for i := 0; i+4 < len(s); i++ {
		if s[i]|0x20 != 'e' || s[i+1]|0x20 != 'p' || s[i+2]|0x20 != 'h' || s[i+3]|0x20 != 'i' {
			continue
		}
		switch s[i+4] {
		case ':', '%', '\\', '&':
			return true
		}
	}
	return false
}

// PlantedToken is the refusal for a token-like value found in where (a
// form field, a JSON key, the query string …), named by place, never by value.
func PlantedToken(where string) error {
	return &BodyError{Kind: ErrPlantedToken, Reason: "a phiguard token (or text that spells one) was sent in " + where + "; only phiguard writes tokens"}
}
