package submit

import (
	"testing"
	"time"

	"github.com/af-project/af/internal/creds"
)

// TestCredentialsTTL: credentials live for the graph's deadline plus the
// margin, not a flat 12 h, and never less than the deadline needs.
func TestCredentialsTTL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                  string
		ttl, deadline         time.Duration
		mode                  creds.Mode
		wantTTL, wantDeadline time.Duration
	}{
		{"default deadline", 0, DefaultDeadline, creds.ModeAssumeRole, DefaultDeadline + CredentialsMargin, DefaultDeadline},
		{"short deadline", 0, time.Hour, creds.ModeAssumeRole, time.Hour + CredentialsMargin, time.Hour},
		{"tiny deadline: STS minimum", 0, time.Minute, creds.ModeAssumeRole, creds.MinTTL, time.Minute},
		{"deadline past AssumeRole's 12 h", 0, 20 * time.Hour, creds.ModeAssumeRole, creds.MaxAssumeRoleTTL, creds.MaxAssumeRoleTTL - CredentialsMargin},
		{"federation token reaches 36 h", 0, 20 * time.Hour, creds.ModeFederationToken, 20*time.Hour + CredentialsMargin, 20 * time.Hour},
		{"explicit ttl longer", 5 * time.Hour, time.Hour, creds.ModeAssumeRole, 5 * time.Hour, time.Hour},
		{"explicit ttl shorter shortens the deadline", time.Hour, 3 * time.Hour, creds.ModeAssumeRole, time.Hour, time.Hour - CredentialsMargin},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ttl, deadline := CredentialsTTL(tc.ttl, tc.deadline, tc.mode)
			if ttl != tc.wantTTL || deadline != tc.wantDeadline {
				t.Fatalf("ttl %s deadline %s, want %s %s", ttl, deadline, tc.wantTTL, tc.wantDeadline)
			}
			if deadline+CredentialsMargin > ttl {
				t.Fatalf("deadline %s + margin outlives the credentials (%s)", deadline, ttl)
			}
		})
	}
}
