package awsconf

import (
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Present says which of the standard AWS settings the environment and
// the shared files hold, without asking any service (no instance
// metadata), so a message can name what is missing.
type Present struct {
	// Endpoint is AWS_ENDPOINT_URL or the loaded endpoint ("": AWS).
	Endpoint string
	// Credentials names where credentials come from ("" when none of the
	// environment's or the shared files' sources is there).
	Credentials string
	// Region is AWS_REGION, AWS_DEFAULT_REGION or a profile's, "" when
	// only the default applies.
	Region string
}

// Settings reports what cfg was loaded from.
func Settings(cfg aws.Config) Present {
	p := Present{Endpoint: Endpoint(cfg)}
	switch {
	case os.Getenv("AWS_ACCESS_KEY_ID") != "":
		p.Credentials = "AWS_ACCESS_KEY_ID"
	case os.Getenv("AWS_PROFILE") != "":
		p.Credentials = "AWS_PROFILE=" + os.Getenv("AWS_PROFILE")
	case os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE") != "":
		p.Credentials = "AWS_WEB_IDENTITY_TOKEN_FILE"
	case os.Getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI") != "" || os.Getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != "":
		p.Credentials = "the container credentials endpoint"
	default:
		for _, f := range sharedFiles() {
			if _, err := os.Stat(f); err == nil {
				p.Credentials = f
				break
			}
		}
	}
	for _, v := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if os.Getenv(v) != "" {
			p.Region = os.Getenv(v)
			break
		}
	}
	if p.Region == "" && p.Credentials != "" && cfg.Region != DefaultRegion {
		p.Region = cfg.Region
	}
	return p
}

// sharedFiles are the shared credentials and config files the SDK reads.
func sharedFiles() []string {
	var out []string
	for _, v := range []string{"AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"} {
		if f := os.Getenv(v); f != "" {
			out = append(out, f)
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		out = append(out, filepath.Join(home, ".aws", "credentials"), filepath.Join(home, ".aws", "config"))
	}
	return out
}
