/*
 * Socket handoff: the proxy gives a logged-in backend its client's own socket, so that the
 * session's bytes flow between the client and postgres with no relay in between
 * (docs/proxy.md, "Socket handoff").
 *
 * Only Arbor's proxy asks for it, by the startup parameter arbor.handoff=on on a connection to
 * the compute's private unix socket; the proxy removes any arbor.* parameter a client sends.
 * After the role's password has been proven (ClientAuthentication_hook, before
 * AuthenticationOk is sent), the backend
 *   1. sends the proxy 'h', int32 length 12, int32 its pid, int32 its cancel key, so that the
 *      proxy can route cancel requests and learn when the session ends (a pidfd);
 *   2. receives one byte 'H' carrying the client's socket (SCM_RIGHTS);
 *   3. puts that socket in place of its own (dup2 onto the same descriptor number), and
 *      rebuilds the wait set that PostgreSQL's protocol layer polls, which watched the old one.
 * PostgreSQL then sends AuthenticationOk, its parameters, BackendKeyData and ReadyForQuery to
 * the client itself. Anything unexpected ends the login with FATAL before step 3, on the
 * proxy's socket. Nothing of PostgreSQL is changed: ClientAuthentication_hook is its
 * documented extension point, and FeBeWaitSet is the exported wait set of libpq/pqcomm.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dup3 */
#endif
#include "postgres.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libpq/auth.h"
#include "libpq/libpq.h"
#include "libpq/pqformat.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/latch.h"
#include "utils/wait_event.h"
#include "utils/memutils.h"

void arbor_handoff_init(void);

static ClientAuthentication_hook_type previous_auth_hook = NULL;

/* How long the backend waits for the proxy's socket: the proxy sends it at once. */
#define HANDOFF_WAIT_MS 10000

/* Whether the startup packet asked for a handoff; removes the parameter either way, so that
 * PostgreSQL does not make a placeholder setting of it. */
static bool
take_handoff_option(Port *port)
{
    List *kept = NIL;
    bool wanted = false;
    ListCell *lc;
    /* PostgreSQL reads the list after authentication: it lives as long as the backend. */
    MemoryContext was = MemoryContextSwitchTo(TopMemoryContext);

    for (lc = list_head(port->guc_options); lc != NULL; lc = lnext(port->guc_options, lc))
    {
        char *name = lfirst(lc);
        char *value;

        lc = lnext(port->guc_options, lc);
        if (lc == NULL)
            break;
        value = lfirst(lc);
        if (pg_strcasecmp(name, "arbor.handoff") == 0)
        {
            wanted = pg_strcasecmp(value, "on") == 0;
            continue;
        }
        kept = lappend(kept, name);
        kept = lappend(kept, value);
    }
    port->guc_options = kept;
    MemoryContextSwitchTo(was);
    return wanted;
}

/* Receives the client's socket from the proxy. */
static int
receive_socket(int fd)
{
    char byte = 0;
    char control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg;
    struct cmsghdr *cmsg;
    int received = -1;
    ssize_t n;

    for (;;)
    {
        /* The latch too: pg_terminate_backend and authentication_timeout set it, and end the
         * login here as they would in any other wait of the login. */
        int events = WaitLatchOrSocket(MyLatch,
                                       WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT |
                                           WL_EXIT_ON_PM_DEATH,
                                       fd, HANDOFF_WAIT_MS, PG_WAIT_EXTENSION);

        if (events & WL_LATCH_SET)
        {
            ResetLatch(MyLatch);
            CHECK_FOR_INTERRUPTS();
        }
        if (events & WL_TIMEOUT)
            ereport(FATAL,
                    (errcode(ERRCODE_CONNECTION_FAILURE),
                     errmsg("arbor handoff: the proxy sent no socket")));
        if (!(events & WL_SOCKET_READABLE))
            continue;
        memset(&msg, 0, sizeof msg);
        memset(control, 0, sizeof control);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        break;
    }
    for (cmsg = CMSG_FIRSTHDR(&msg); cmsg != NULL; cmsg = CMSG_NXTHDR(&msg, cmsg))
    {
        if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS &&
            cmsg->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(&received, CMSG_DATA(cmsg), sizeof(int));
    }
    if (n != 1 || byte != 'H' || received < 0 || (msg.msg_flags & MSG_CTRUNC) != 0)
    {
        if (received >= 0)
            close(received);
        ereport(FATAL,
                (errcode(ERRCODE_PROTOCOL_VIOLATION),
                 errmsg("arbor handoff: the proxy's answer carries no client socket")));
    }
    return received;
}

static void
take_client_socket(Port *port)
{
    StringInfoData hello;
    int client;
    struct stat st;
    int type = 0;
    socklen_t type_len = sizeof type;
    int flags;
    WaitEventSet *set;

    /* Nothing of the client's may sit unread in PostgreSQL's buffer: the proxy sends nothing
     * between its last SASL message and the socket. */
    if (pq_buffer_has_data())
        ereport(FATAL,
                (errcode(ERRCODE_PROTOCOL_VIOLATION),
                 errmsg("arbor handoff: unexpected bytes before the handoff")));
    /* AuthenticationSASLFinal waits in PostgreSQL's send buffer (it is not flushed until
     * AuthenticationOk): it is the proxy's, so it goes out first, with the pid and cancel key
     * behind it, in one flush. */
    pq_beginmessage(&hello, 'h');
    pq_sendint32(&hello, (uint32) MyProcPid);
    pq_sendint32(&hello, (uint32) MyCancelKey);
    pq_endmessage(&hello);
    if (pq_flush() != 0)
        ereport(FATAL,
                (errcode(ERRCODE_CONNECTION_FAILURE),
                 errmsg("arbor handoff: could not write to the proxy")));

    client = receive_socket(port->sock);
    if (fstat(client, &st) != 0 || !S_ISSOCK(st.st_mode) ||
        getsockopt(client, SOL_SOCKET, SO_TYPE, &type, &type_len) != 0 || type != SOCK_STREAM)
    {
        close(client);
        ereport(FATAL,
                (errcode(ERRCODE_PROTOCOL_VIOLATION),
                 errmsg("arbor handoff: the descriptor is not a stream socket")));
    }
    /* The new wait set first: an error below ends the login on the old socket, whose wait
     * set is still whole. */
    set = CreateWaitEventSet(TopMemoryContext, FeBeWaitSetNEvents);
    flags = fcntl(client, F_GETFL);
    /* Close-on-exec, as the proxy kept it: no program a backend starts inherits it. */
    if (flags < 0 || fcntl(client, F_SETFL, flags | O_NONBLOCK) != 0 ||
        dup3(client, port->sock, O_CLOEXEC) < 0)
    {
        close(client);
        ereport(FATAL,
                (errcode(ERRCODE_CONNECTION_FAILURE),
                 errmsg("arbor handoff: could not take the client's socket: %m")));
    }
    close(client);

    /* The old wait set watched the replaced socket (epoll keeps the old file, which is gone
     * now): the new one, as pq_init builds it, watches the same descriptor number. */
    AddWaitEventToSet(set, WL_SOCKET_WRITEABLE, port->sock, NULL, NULL);
    AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
    AddWaitEventToSet(set, WL_POSTMASTER_DEATH, PGINVALID_SOCKET, NULL, NULL);
    FreeWaitEventSet(FeBeWaitSet);
    FeBeWaitSet = set;
}

static void
arbor_client_authentication(Port *port, int status)
{
    bool wanted = take_handoff_option(port);

    if (previous_auth_hook)
        previous_auth_hook(port, status);
    /* Only on the private unix socket, and only once the password is proven. */
    if (!wanted || status != STATUS_OK || port->laddr.addr.ss_family != AF_UNIX)
        return;
    take_client_socket(port);
}

void
arbor_handoff_init(void)
{
    previous_auth_hook = ClientAuthentication_hook;
    ClientAuthentication_hook = arbor_client_authentication;
}
