module github.com/af-project/af/sdk

go 1.26.0
