package consent

import "errors"

// errNotPhone is Normalize's one error. It never holds the input, which
// may be a patient's number.
var errNotPhone = errors.New("not a phone number (E.164 as +CC…, or a 10-digit North American number)")

// maxNumber bounds the input Normalize reads.
const maxNumber = 64

// Normalize returns number in E.164: '+' and 8 to 15 digits. It drops
// spaces, tabs, '-', '.', '(' and ')'; reads 10 digits as a North
// American (NANP) number and 11 starting with 1 as one with its country
// code; and keeps '+' and 8 to 15 digits as they are. A number with
// country code 1 must be a NANP number: ten digits, area code and
// exchange starting with 2 to 9. Anything else is an error: letters or
// an extension, a number without its country code outside North America,
// a dialing prefix (011, 00), and short codes (5 or 6 digits), which
// belong to businesses, never to patients.
func Normalize(number string) (string, error) {
	if len(number) > maxNumber {
		return "", errNotPhone
	}
	var buf [maxNumber]byte
	d := buf[:0]
	plus := false
	for i := 0; i < len(number); i++ {
		switch c := number[i]; {
		case '0' <= c && c <= '9':
			d = append(d, c)
		case c == '+' && !plus && len(d) == 0:
			plus = true
		case c == ' ' || c == '\t' || c == '-' || c == '.' || c == '(' || c == ')':
		default:
			return "", errNotPhone
		}
	}
	switch {
	case !plus && len(d) == 10 && nanp(d):
		return "+1" + string(d), nil
	case !plus && len(d) == 11 && d[0] == '1' && nanp(d[1:]):
		return "+" + string(d), nil
	case !plus || len(d) < 8 || len(d) > 15 || d[0] == '0':
		return "", errNotPhone
	case d[0] == '1' && (len(d) != 11 || !nanp(d[1:])):
		return "", errNotPhone
	}
	return "+" + string(d), nil
}

// nanp reports whether d, 10 digits, is a NANP number: NXX-NXX-XXXX,
// where N is 2 to 9.
func nanp(d []byte) bool {
	return len(d) == 10 && d[0] >= '2' && d[3] >= '2'
}
