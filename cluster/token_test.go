package cluster

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var testFingerprint = strings.Repeat("ab", 32)

func TestTokenRoundTrip(t *testing.T) {
	tok, err := newToken(testFingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.ID) != 16 || len(tok.Secret) < 32 {
		t.Fatalf("newToken made id %d chars, secret %d chars", len(tok.ID), len(tok.Secret))
	}
	for _, s := range []string{tok.String(), " " + tok.String() + "\n", "\t" + tok.String() + "\r\n"} {
		got, err := ParseToken(s)
		if err != nil {
			t.Fatalf("ParseToken(String()): %v", err)
		}
		if d := cmp.Diff(tok, got); d != "" {
			t.Errorf("round trip (-want +got):\n%s", d)
		}
	}
	if h := tok.SecretHash(); h != hashSecret(tok.Secret) || len(h) != 64 || !isHex(h) {
		t.Errorf("SecretHash = %q, want the hex sha256 of the secret", h)
	}
	if strings.Contains(tok.SecretHash(), tok.Secret) {
		t.Errorf("the hash contains the secret")
	}
	other, err := newToken(testFingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == tok.ID || other.Secret == tok.Secret {
		t.Errorf("two new tokens share an id or a secret")
	}
}

func TestTokenUppercaseFingerprint(t *testing.T) {
	// Hex is hex; VerifyPinned compares fingerprints case-insensitively.
	s := strings.Join([]string{tokenPrefix, strings.ToUpper(testFingerprint), "0123456789abcdef", strings.Repeat("s", 32)}, ".")
	if _, err := ParseToken(s); err != nil {
		t.Errorf("ParseToken with an uppercase fingerprint: %v", err)
	}
}

func TestParseTokenMalformed(t *testing.T) {
	fp, id, secret := testFingerprint, "0123456789abcdef", "Zm9vYmFyLXNlY3JldC1wbGFudGVkLWhlcmUtMDAx"
	join := func(parts ...string) string { return strings.Join(parts, ".") }
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"blank", "   \n"},
		{"one field", secret},
		{"wrong prefix", join("weft2", fp, id, secret)},
		{"uppercase prefix", join("WEFT1", fp, id, secret)},
		{"no prefix", join(fp, id, secret)},
		{"extra field", join(tokenPrefix, fp, id, secret, "x")},
		{"empty fields", join(tokenPrefix, "", "", secret)},
		{"fingerprint too short", join(tokenPrefix, fp[:62], id, secret)},
		{"fingerprint odd length", join(tokenPrefix, fp[:63], id, secret)},
		{"fingerprint too long", join(tokenPrefix, fp+"ab", id, secret)},
		{"fingerprint not hex", join(tokenPrefix, "zz"+fp[2:], id, secret)},
		{"id too short", join(tokenPrefix, fp, id[:14], secret)},
		{"id too long", join(tokenPrefix, fp, id+"00", secret)},
		{"id odd length", join(tokenPrefix, fp, id[:15], secret)},
		{"id not hex", join(tokenPrefix, fp, "0123456789abcdeg", secret)},
		{"secret too short", join(tokenPrefix, fp, id, secret[:31])},
		{"secret empty", join(tokenPrefix, fp, id, "")},
		{"inner space", join(tokenPrefix, fp, id+" ", secret)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseToken(tt.in)
			checkErr(t, err, ErrTokenFormat)
			if got != (JoinToken{}) {
				t.Errorf("ParseToken returned %+v with its error", got)
			}
			// The token may be a secret: its error must not quote it.
			if err.Error() != ErrTokenFormat.Error() {
				t.Errorf("error %q is not the fixed message", err)
			}
			if strings.Contains(err.Error(), secret[:16]) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func FuzzParseToken(f *testing.F) {
	tok, err := newToken(testFingerprint)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok.String())
	f.Add(" " + tok.String() + " ")
	f.Add("weft1." + testFingerprint + ".0123456789abcdef." + strings.Repeat("x", 32))
	f.Add("weft1...")
	f.Add("weft1." + strings.Repeat("G", 64) + ".0123456789abcdef." + strings.Repeat("x", 32))
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseToken(s)
		if err != nil {
			if err != ErrTokenFormat {
				t.Fatalf("error %q is not ErrTokenFormat itself (it may quote the input)", err)
			}
			if got != (JoinToken{}) {
				t.Fatalf("ParseToken returned %+v with its error", got)
			}
			return
		}
		if len(got.CAFingerprint) != 64 || len(got.ID) != 16 || len(got.Secret) < 32 {
			t.Fatalf("accepted fields of lengths %d/%d/%d", len(got.CAFingerprint), len(got.ID), len(got.Secret))
		}
		if _, err := hex.DecodeString(got.CAFingerprint + got.ID); err != nil {
			t.Fatalf("accepted non-hex fingerprint or id: %q %q", got.CAFingerprint, got.ID)
		}
		if got.String() != strings.TrimSpace(s) {
			t.Fatalf("String() = %q, want %q", got.String(), strings.TrimSpace(s))
		}
		again, err := ParseToken(got.String())
		if err != nil || again != got {
			t.Fatalf("re-parse of %q: %+v, %v", got.String(), again, err)
		}
	})
}
