// Package browser holds the real-browser test of the example: two Chromium
// instances, each with its own profile and cookies, sign in as one user,
// and one signs the other out from its "Your devices" list.
//
// It is a module of its own so that chromedp, and the Go version it needs,
// stay out of gfsession's go.mod. hack/test.sh runs it after the package's
// tests, and installs Debian's chromium first when it is missing.
package browser
