package awsconf

import (
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Settings reads the environment and the shared files only: with none of
// them it finds nothing; with a profile or keys it says which.
func TestSettings(t *testing.T) {
	home := t.TempDir()
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"} {
		t.Setenv(v, "")
	}
	t.Setenv("HOME", home)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(home, "none"))
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(home, "none"))
	if p := Settings(aws.Config{Region: DefaultRegion}); p != (Present{}) {
		t.Fatalf("no settings: %+v", p)
	}
	t.Setenv("AWS_PROFILE", "analyst")
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
	if p := Settings(aws.Config{Region: "eu-west-1"}); p.Credentials != "AWS_PROFILE=analyst" || p.Region != "eu-west-1" || p.Endpoint != "http://127.0.0.1:9000" {
		t.Fatalf("profile: %+v", p)
	}
}
