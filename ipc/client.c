/* SPDX-License-Identifier: ISC */
#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ipc/client.h"
#include "secmem.h"

struct sink {
        char *data;
        size_t len;
        size_t cap;
        bool overflow;
};

static size_t sink_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct sink *s = userdata;
        size_t n = size * nmemb;

        if (n > CLIENT_RESPONSE_MAX - s->len) {
                s->overflow = true;
                return 0;
        }
        if (s->len + n + 1 > s->cap) {
                size_t cap = s->cap ? s->cap : 4096;
                while (cap < s->len + n + 1)
                        cap *= 2;
                /* Not realloc(): the old buffer may hold a token and must be wiped. */
                char *p = malloc(cap);
                if (!p)
                        return 0;
                if (s->data) {
                        memcpy(p, s->data, s->len);
                        secure_wipe(s->data, s->len);
                        free(s->data);
                }
                s->data = p;
                s->cap = cap;
        }
        memcpy(s->data + s->len, ptr, n);
        s->len += n;
        s->data[s->len] = '\0';
        return n;
}

void client_response_clear(struct client_response *r) {
        if (!r)
                return;
        if (r->body) {
                secure_wipe(r->body, r->len);
                free(r->body);
        }
        *r = (struct client_response) {};
}

int client_request(const char *socket_path, const char *method, const char *path, const char *body,
                   unsigned timeout, struct client_response *ret) {
        struct sink sink = {};
        struct curl_slist *headers = NULL;
        char url[2048];
        long status = 0;
        CURLcode cc;
        int r = 0;

        if (strlen(path) + sizeof "http://localhost" >= sizeof url)
                return -EINVAL;
        snprintf(url, sizeof url, "http://localhost%s", path);

        CURL *curl = curl_easy_init();
        if (!curl)
                return -ENOMEM;
        curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, socket_path);
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http");
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long) timeout);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sink_write);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
        headers = curl_slist_append(headers, "Accept: application/json");
        if (body) {
                headers = curl_slist_append(headers, "Content-Type: application/json");
                curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
        }
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);

        cc = curl_easy_perform(curl);
        switch (cc) {
        case CURLE_OK:
                curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
                break;
        case CURLE_COULDNT_CONNECT: {
                struct stat st;
                if (stat(socket_path, &st) < 0)
                        r = -errno;
                else if (access(socket_path, W_OK) < 0)
                        r = -EACCES;
                else
                        r = -ECONNREFUSED;
                break;
        }
        case CURLE_OPERATION_TIMEDOUT:
                r = -ETIMEDOUT;
                break;
        case CURLE_WRITE_ERROR:
                r = sink.overflow ? -EMSGSIZE : -ENOMEM;
                break;
        case CURLE_OUT_OF_MEMORY:
                r = -ENOMEM;
                break;
        default:
                r = -EPROTO;
                break;
        }
        curl_slist_free_all(headers);
        curl_easy_cleanup(curl);

        if (r < 0) {
                if (sink.data) {
                        secure_wipe(sink.data, sink.len);
                        free(sink.data);
                }
                return r;
        }
        if (!sink.data) {
                sink.data = strdup("");
                if (!sink.data)
                        return -ENOMEM;
        }
        *ret = (struct client_response) { .status = status, .body = sink.data, .len = sink.len };
        return 0;
}

char *client_default_socket(void) {
        const char *runtime = geteuid() != 0 ? secure_getenv("XDG_RUNTIME_DIR") : NULL;
        char *p;

        if (runtime && runtime[0] == '/')
                return asprintf(&p, "%s/credagent/agent.sock", runtime) < 0 ? NULL : p;
        return strdup("/run/credagent/agent.sock");
}

char *client_socket_path(const char *socket_arg) {
        const char *e;

        if (socket_arg)
                return strdup(socket_arg);
        e = getenv("CREDAGENT_SOCK");
        if (e && *e)
                return strdup(e);
        return client_default_socket();
}
