module github.com/goframe-contrib/gfsession/hack/browser

go 1.25

require (
	github.com/chromedp/chromedp v0.23.1
	github.com/stretchr/testify v1.11.1
)

require (
	github.com/chromedp/cdproto v0.160.1 // indirect
	github.com/davecgh/go-spew v1.1.1 // indirect
	github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
	github.com/pmezard/go-difflib v1.0.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
