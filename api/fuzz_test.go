package api

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseLastEventID: never panics; accepts exactly the decimal uint64s.
func FuzzParseLastEventID(f *testing.F) {
	for _, s := range []string{"0", "1", "18446744073709551615", "18446744073709551616", "-1", " 42 ", "4e3", "", "12abc", "٣"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseLastEventID(s)
		want, werr := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		valid := werr == nil && len(strings.TrimSpace(s)) <= 20 && allDigits(strings.TrimSpace(s))
		if valid != (err == nil) || (valid && n != want) {
			t.Fatalf("ParseLastEventID(%q) = %d, %v; want %d valid=%v", s, n, err, want, valid)
		}
	})
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
