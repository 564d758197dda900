package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

const tokenPrefix = "ephi:v1:"

// seed sends the documents the GET workloads serve through phiguard's
// encrypting route and has the upstream serve what it received: real
// phiguard tokens, which the baseline forwards as they are and phiguard
// decrypts.
func seed(ctx context.Context, client *http.Client, phg string, up *upstream, auth string) error {
	store := func(conv string, body []byte) ([]byte, error) {
		path := "/api/v1/conversations/" + conv + "/messages"
		w := &workload{name: "seed", method: "POST", path: path, body: body}
		if err := shot(ctx, client, phg, w, auth); err != nil {
			return nil, fmt.Errorf("seed POST %s through phiguard: %w", path, err)
		}
		sealed := up.last(conv)
		if sealed == nil {
			return nil, fmt.Errorf("seed POST %s: the upstream stored nothing", path)
		}
		return sealed, nil
	}
	doc, err := store("seed-doc", document(4<<10, phiFields, fieldLen))
	if err != nil {
		return err
	}
	if n := bytes.Count(doc, []byte(tokenPrefix)); n != len(phiFields) {
		return fmt.Errorf("seed: the upstream received %d tokens in the document, want %d", n, len(phiFields))
	}
	list := []byte(`{"data":[`)
	for i := range listLen {
		msg, err := store(fmt.Sprintf("seed-list-%02d", i), listMessage(i))
		if err != nil {
			return err
		}
		if n := bytes.Count(msg, []byte(tokenPrefix)); n != 1 {
			return fmt.Errorf("seed: the upstream received %d tokens in list message %d, want 1", n, i)
		}
		if i > 0 {
			list = append(list, ',')
		}
		list = append(list, msg...)
	}
	list = append(list, `],"next_cursor":null}`...)
	up.serve(doc, list)
	return nil
}

// checkSeeded makes sure the decrypt workloads decrypt: phiguard answers
// plaintext for every sealed field, the baseline the tokens themselves.
func checkSeeded(ctx context.Context, client *http.Client, phg, base string, auth string) error {
	get := func(origin, path string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, origin+path, nil)
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", auth)
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET %s: status %d: %s", path, resp.StatusCode, bytes.TrimSpace(body))
		}
		return string(body), nil
	}
	plain, err := get(phg, docPath)
	if err != nil {
		return fmt.Errorf("phiguard: %w", err)
	}
	for _, f := range phiFields {
		if !strings.Contains(plain, phiText(f, fieldLen)) {
			return fmt.Errorf("phiguard did not decrypt field %s of the document", f)
		}
	}
	if strings.Contains(plain, tokenPrefix) {
		return fmt.Errorf("phiguard left tokens in the document")
	}
	sealed, err := get(base, docPath)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	if n := strings.Count(sealed, tokenPrefix); n != len(phiFields) {
		return fmt.Errorf("the baseline served %d tokens in the document, want %d", n, len(phiFields))
	}
	list, err := get(phg, msgsPath)
	if err != nil {
		return fmt.Errorf("phiguard: %w", err)
	}
	if strings.Contains(list, tokenPrefix) || !strings.Contains(list, phiText(fmt.Sprintf("body %02d", listLen-1), fieldLen)) {
		return fmt.Errorf("phiguard did not decrypt the message list")
	}
	return nil
}
