/* SPDX-License-Identifier: ISC */
#pragma once

#include <curl/curl.h>

/* Connection reuse for the net process's token requests (issue 4, item 6): one thread runs
 * a libcurl multi handle, so transfers to the same IdP share its connection cache (HTTP/1.1
 * keep-alive) and a share handle gives new connections TLS session resumption.  Fetch
 * workers keep their own easy handles and block in curlpool_perform() as they would in
 * curl_easy_perform(); the multi runs every transfer concurrently, so a slow IdP delays
 * only the workers waiting on it.
 *
 * What a kept connection holds, and the bounds put on it:
 *  - its TLS traffic keys and OpenSSL's record buffers.  Received plaintext is cleansed by
 *    OpenSSL as soon as libcurl has read it (SSL_OP_CLEANSE_PLAINTEXT, set by
 *    curlpool_ssl_ctx_cb() on every TLS context), so the access tokens in answers do not
 *    stay there; the keys do, for the life of the connection.
 *  - a connection idle for CURLPOOL_IDLE_MAX s, or older than CURLPOOL_LIFETIME_MAX s, is
 *    not reused but closed; when no transfer has run for CURLPOOL_IDLE_MAX s the thread
 *    closes every connection it keeps (libcurl frees their memory through the wiping
 *    allocator of oauth_global_init()).
 *  - at most CURLPOOL_CONNECTIONS_MAX idle connections are kept (the oldest is closed). */

#define CURLPOOL_IDLE_MAX 60            /* s a connection may stay idle and still be reused */
#define CURLPOOL_LIFETIME_MAX 300       /* s a connection may be reused after it was opened */
#define CURLPOOL_CONNECTIONS_MAX 32     /* idle connections kept */

struct curlpool;

/* Creates a pool and starts its thread (call it after the sandbox is in place: the thread
 * inherits the seccomp filter and Landlock rules of its creator).  Stores it in *RET and
 * returns 0, or -ENOMEM, or a negative errno from pthread_create(); *RET untouched then. */
int curlpool_new(struct curlpool **ret);

/* Stops the thread and closes every connection.  Transfers still running are not waited
 * for: call it once every worker has returned from curlpool_perform().  Accepts NULL.
 * Returns NULL. */
struct curlpool *curlpool_free(struct curlpool *p);

/* Prepares the easy handle H for P: the share handle (TLS sessions) and the connection
 * limits above.  Call before curlpool_perform(), once per handle.  Returns CURLE_OK or the
 * CURLcode of the option libcurl refused. */
CURLcode curlpool_attach(struct curlpool *p, CURL *h);

/* Runs the transfer of H (fully set up, attached with curlpool_attach()) in P's thread and
 * waits for it to end.  Returns its CURLcode; H can then be queried (curl_easy_getinfo())
 * and cleaned up by the caller, in the caller's thread.  Callbacks of H (write, progress)
 * run in P's thread while the caller waits.  CURLINFO_PRIVATE of H belongs to P during the
 * call.  Returns CURLE_FAILED_INIT when P's thread is gone, CURLE_OUT_OF_MEMORY when the
 * multi handle refuses H. */
CURLcode curlpool_perform(struct curlpool *p, CURL *h);

/* CURLOPT_SSL_CTX_FUNCTION for every token request, pooled or not: sets
 * SSL_OP_CLEANSE_PLAINTEXT (OpenSSL ≥ 3.0) on the OpenSSL SSL_CTX, so decrypted answers do
 * not outlive their reading in OpenSSL's buffers.  Always returns CURLE_OK. */
CURLcode curlpool_ssl_ctx_cb(CURL *h, void *ssl_ctx, void *userdata);
