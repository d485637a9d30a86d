package main

import (
	_ "github.com/aws/aws-sdk-go-v2/aws"
	_ "github.com/aws/aws-sdk-go-v2/config"
	_ "github.com/aws/aws-sdk-go-v2/credentials"
	_ "github.com/aws/aws-sdk-go-v2/service/s3"
	_ "github.com/aws/aws-sdk-go-v2/service/sts"
	_ "go.etcd.io/bbolt"
	_ "golang.org/x/crypto/nacl/box"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/klauspost/compress/gzip"
	_ "github.com/ulikunitz/xz"
	_ "github.com/ulikunitz/xz/lzma"
	_ "github.com/dsnet/compress/bzip2"
	_ "github.com/docker/docker/client"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/emersion/go-smtp"
	_ "github.com/chromedp/chromedp"
	_ "gopkg.in/yaml.v3"
	_ "golang.org/x/term"
)
func main() {}
