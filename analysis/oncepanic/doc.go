// Package oncepanic defines an analyzer for AP-09 (INC-2022-418,
// INC-2023-093: init race and an unrecoverable panic): one-shot
// initialisation that turns a transient failure into a permanent one.
//
// It reports
//
//   - inside a function passed to (*sync.Once).Do: a call that creates a
//     client or connection — it returns (T, error) and is named
//     Dial*/Connect*/Open* or T's name says client, conn, pool, session,
//     channel… — whose error is assigned to _: the once is spent even though
//     nothing was created, so every later caller gets a nil value;
//   - inside such a function, when it creates a client or connection or
//     does network, database, file or process I/O: panic (or log.Panic*) —
//     Do treats a panicking function as done, so after one failure every
//     caller sees the zero value forever;
//   - sync.OnceValue / sync.OnceValues wrapping a function that returns an
//     error and creates a client or connection or does such I/O — the first
//     error is cached for the life of the process (the seed's proposed fix
//     has exactly this flaw).
//
// Initialisation that cannot fail transiently — building a static table,
// unmarshalling an embedded document, marshalling a value — is left alone:
// on real code (klauspost/compress, protobuf, x/net, envoy's cache) panics
// and cached errors there guard programming errors, not outages.
//
// Fix: a retriable lazy initialiser that returns errors, shares one attempt
// among concurrent callers and retries a failed attempt later with back-off
// (pulse's lazy package).
package oncepanic
