using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.Extensions.Logging;
using Sluice.Diagnostics;
using Sluice.Protocol;
using Sluice.Transport;

namespace Sluice;

/// <summary>
/// Lets a WebSocket connection leave Kestrel's HTTP/1.1 request once it is upgraded. Kestrel keeps the request's
/// objects (the HTTP/1.1 connection state, both header collections, the HttpContext, the request's pending calls:
/// about 4 KiB) for as long as the request delegate runs, which for a WebSocket is the connection's whole life. A
/// connection middleware puts this between Kestrel's socket and its HTTP layer; after the 101 the connection reads
/// and writes the socket's pipes itself, the request delegate returns, and the middleware runs the connection to its
/// end. The HTTP layer's last calls on the pipes (a flush, a complete) are dropped from the switch on.
/// </summary>
/// <remarks>
/// Only a connection whose HTTP layer reads the socket's pipes through this middleware switches: not HTTP/2, and
/// not a TLS connection whose TLS middleware runs inside this one (it would read the encrypted bytes). On Sluice's
/// own transport (<see cref="SocketTransportConnection"/>) with nothing in between, the connection goes further: it
/// stops the transport's receive loop and reads the socket itself.
/// </remarks>
internal sealed class UpgradeHandoff : IConnectionHeartbeatFeature
{
    private readonly ConnectionContext _connection;
    private readonly IDuplexPipe _transport;
    private readonly HttpSide _httpSide;
    private readonly IConnectionHeartbeatFeature? _heartbeat;
    private readonly Socket? _socket;
    private HeartbeatRelay? _relay;
    private TaskCompletionSource? _released;
    private Task? _connectionTask;
    private volatile bool _switched;

    private UpgradeHandoff(ConnectionContext connection)
    {
        _connection = connection;
        _transport = connection.Transport;
        _socket = DirectSocket(connection);
        _httpSide = new HttpSide(this);
        _heartbeat = connection.Features.Get<IConnectionHeartbeatFeature>();
        connection.Transport = _httpSide;
        connection.Features.Set(this);
        if (_heartbeat is not null)
        {
            // Kestrel's HTTP layer registers for the heartbeat and never unregisters: through the relay, the
            // registration can be dropped and the HTTP layer's objects collected.
            connection.Features.Set<IConnectionHeartbeatFeature>(this);
        }
    }

    /// <summary>The connection middleware: wraps the HTTP layer and, after it returns, runs a connection it gave up.</summary>
    internal static async Task OnConnectionAsync(ConnectionDelegate next, ConnectionContext context, ILogger logger)
    {
        UpgradeHandoff? handoff = new(context);
        try
        {
            await next(context);
        }
        finally
        {
            var connection = handoff.Detach();

            // The connection's leg reads the socket's pipes itself: the HTTP layer's views can go.
            handoff = null;
            if (connection is not null)
            {
                // Also when a middleware inside this one threw after the request delegate returned: the transport is
                // disposed once this returns, so the connection must have ended first. Awaited here rather than in a
                // method of its own, whose state every idle connection would hold besides this one's.
                try
                {
                    await connection;
                }
                catch (Exception ex)
                {
                    // What Kestrel would have logged had the request delegate thrown.
                    SluiceLog.HandedOffConnectionFailed(logger, context.ConnectionId, ex);
                }
            }
        }
    }

    /// <summary>
    /// The socket this middleware may write to itself, bypassing the transport's output pipe: only when nothing sits
    /// between the socket and this middleware (no TLS, no middleware that wraps the transport), which shows in the
    /// transport's pipe still being the one Kestrel's socket transport created.
    /// </summary>
    /// <remarks>
    /// A send from the writer's own thread costs one system call when the socket's buffer has room; through the pipe it
    /// costs a copy, a wake-up of the transport's send loop on another thread, and the same call there. For a topic
    /// published to thousands of connections that hop was a fifth of the CPU. Every byte this connection sends then
    /// goes this way, the HTTP layer's too, so the frames after the 101 cannot overtake it.
    /// </remarks>
    private static Socket? DirectSocket(ConnectionContext connection)
    {
        if (connection.Features.Get<IConnectionSocketFeature>() is not { Socket: { } socket } feature
            || feature.GetType().Assembly != connection.Transport.GetType().Assembly
            || connection.Features.Get<ITlsHandshakeFeature>() is not null)
        {
            return null;
        }

        try
        {
            // Kestrel's own sends and receives are asynchronous and unaffected; a synchronous send now takes what the
            // socket's buffer holds and returns instead of blocking the thread.
            socket.Blocking = false;
            return socket;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            return null;
        }
    }

    /// <summary>The connection's handoff, if its HTTP/1.1 request can leave Kestrel's HTTP layer after the 101.</summary>
    internal static UpgradeHandoff? For(HttpContext context) =>
        context.Features.Get<UpgradeHandoff>() is { } handoff
            && ReferenceEquals(handoff._connection.Transport, handoff._httpSide)
            && (HttpProtocol.IsHttp11(context.Request.Protocol) || HttpProtocol.IsHttp10(context.Request.Protocol))
            ? handoff
            : null;

    /// <summary>
    /// Called once the 101 has been flushed: from here on the connection reads and writes the socket through the
    /// returned stream, and the HTTP layer's calls on its pipes are dropped. Disposing the stream completes the pipes,
    /// which closes the socket; the returned abort aborts it, as <see cref="HttpContext.Abort"/> does before.
    /// </summary>
    internal async ValueTask<(Stream Stream, Action Abort)> SwitchAsync()
    {
        _released = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _switched = true;

        // On Sluice's transport the connection stops the transport's receive loop, drains its pipe, and then reads the
        // socket itself: an open connection holds neither the pipe nor the loop.
        var own = _connection is SocketTransportConnection transport && ReferenceEquals(_transport, transport) ? transport : null;
        if (own is not null)
        {
            await own.StopReceivingAsync();
        }

        var stream = new PipeStream(_connection, _transport, _socket, own);
        return (stream, stream.Abort);
    }

    /// <summary>Called by the connection once nothing reads the request any more.</summary>
    internal void Release() => _released?.TrySetResult();

    /// <summary>
    /// Completes when <paramref name="connection"/> ends or, once it is released, hands the rest of it to the
    /// middleware, which awaits it after the HTTP layer has returned: the request delegate and every frame up to here
    /// can end, and with them the request's objects.
    /// </summary>
    internal async Task AdoptAsync(Task connection)
    {
        if (_released is null || await Task.WhenAny(connection, _released.Task) == connection)
        {
            await connection;
            return;
        }

        _released = null;
        _connectionTask = connection;
    }

    void IConnectionHeartbeatFeature.OnHeartbeat(Action<object> action, object state)
    {
        var relay = new HeartbeatRelay(action, state, _relay);
        _relay = relay;
        _heartbeat!.OnHeartbeat(static s => ((HeartbeatRelay)s).Tick(), relay);
    }

    /// <summary>Gives the connection back to the transport; returns the rest of a connection that was handed over.</summary>
    private Task? Detach()
    {
        _connection.Transport = _transport;
        _connection.Features.Set<UpgradeHandoff>(null);
        if (_heartbeat is not null)
        {
            _connection.Features.Set(_heartbeat);
        }

        if (_switched)
        {
            // The HTTP layer is done with this connection: drop what still points at it (its heartbeat registration,
            // its timeout control), so that its objects are collected while the WebSocket goes on.
            for (var relay = _relay; relay is not null; relay = relay.Next)
            {
                relay.Clear();
            }

            _relay = null;
            _connection.Features.Set<IConnectionTimeoutFeature>(null);
        }

        return _connectionTask;
    }

    private sealed class HeartbeatRelay(Action<object> action, object state, HeartbeatRelay? next)
    {
        private volatile Tuple<Action<object>, object>? _handler = Tuple.Create(action, state);

        public HeartbeatRelay? Next { get; } = next;

        public void Tick()
        {
            if (_handler is { } handler)
            {
                handler.Item1(handler.Item2);
            }
        }

        public void Clear() => _handler = null;
    }

    /// <summary>The socket's pipes as the HTTP layer sees them: passed through until the switch, then inert.</summary>
    private sealed class HttpSide(UpgradeHandoff owner) : IDuplexPipe
    {
        public PipeReader Input { get; } = new HttpSideReader(owner);

        public PipeWriter Output { get; } = new HttpSideWriter(owner);
    }

    private sealed class HttpSideReader(UpgradeHandoff owner) : PipeReader
    {
        private PipeReader Inner => owner._transport.Input;

        public override bool TryRead(out ReadResult result)
        {
            if (owner._switched)
            {
                result = new ReadResult(ReadOnlySequence<byte>.Empty, isCanceled: false, isCompleted: true);
                return true;
            }

            return Inner.TryRead(out result);
        }

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default) =>
            owner._switched
                ? new ValueTask<ReadResult>(new ReadResult(ReadOnlySequence<byte>.Empty, isCanceled: false, isCompleted: true))
                : Inner.ReadAsync(cancellationToken);

        public override void AdvanceTo(SequencePosition consumed)
        {
            if (!owner._switched)
            {
                Inner.AdvanceTo(consumed);
            }
        }

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
            if (!owner._switched)
            {
                Inner.AdvanceTo(consumed, examined);
            }
        }

        public override void CancelPendingRead()
        {
            if (!owner._switched)
            {
                Inner.CancelPendingRead();
            }
        }

        public override void Complete(Exception? exception = null)
        {
            if (!owner._switched)
            {
                Inner.Complete(exception);
            }
        }
    }

    /// <summary>
    /// What the HTTP layer writes: passed to the transport's pipe, or with a direct socket buffered here and sent on
    /// flush; dropped after the switch.
    /// </summary>
    private sealed class HttpSideWriter(UpgradeHandoff owner) : PipeWriter
    {
        // Completing it completes the transport's pipe too, which ends Kestrel's send loop and closes the socket.
        private readonly SocketPipeWriter? _direct =
            owner._socket is { } socket ? new SocketPipeWriter(socket, owner._transport.Output.Complete) : null;

        private byte[]? _discard;

        private PipeWriter Inner => _direct ?? owner._transport.Output;

        public override bool CanGetUnflushedBytes => Inner.CanGetUnflushedBytes;

        public override long UnflushedBytes => owner._switched ? 0 : Inner.UnflushedBytes;

        public override Memory<byte> GetMemory(int sizeHint = 0) => owner._switched ? Discard(sizeHint) : Inner.GetMemory(sizeHint);

        public override Span<byte> GetSpan(int sizeHint = 0) => owner._switched ? Discard(sizeHint).Span : Inner.GetSpan(sizeHint);

        public override void Advance(int bytes)
        {
            if (!owner._switched)
            {
                Inner.Advance(bytes);
            }
        }

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) =>
            owner._switched
                ? new ValueTask<FlushResult>(new FlushResult(isCanceled: false, isCompleted: true))
                : Inner.FlushAsync(cancellationToken);

        public override void CancelPendingFlush()
        {
            if (!owner._switched)
            {
                Inner.CancelPendingFlush();
            }
        }

        public override void Complete(Exception? exception = null)
        {
            if (!owner._switched)
            {
                Inner.Complete(exception);
            }
        }

        private Memory<byte> Discard(int sizeHint) =>
            _discard is { } discard && discard.Length >= sizeHint ? discard : _discard = new byte[Math.Max(sizeHint, 256)];
    }

    /// <summary>The socket's pipes as a stream, for the connection's client leg after the switch.</summary>
    private sealed class PipeStream(ConnectionContext connection, IDuplexPipe pipe, Socket? socket, SocketTransportConnection? own) : Stream
    {
        private int _disposed;
        private bool _sendFailed;

        // Sluice's transport, once its pipe is drained: the socket, read directly.
        private Stream? _socketReads;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            _socketReads is { } reads ? reads.ReadAsync(buffer, cancellationToken)
            : own is not null ? ReadStopped(buffer, cancellationToken)
            : ReadPipeAsync(buffer, cancellationToken);

        // Sluice's transport: its loop has ended (SwitchAsync waited for it), so the pipe is complete and reads at once.
        // Its last bytes (a client that did not wait for the 101) are read first, then the socket, with no state held
        // here while a read waits.
        private ValueTask<int> ReadStopped(Memory<byte> buffer, CancellationToken cancellationToken)
        {
            if (pipe.Input.TryRead(out var result))
            {
                var readable = result.Buffer;
                if (!readable.IsEmpty)
                {
                    var count = (int)Math.Min(readable.Length, buffer.Length);
                    readable.Slice(0, count).CopyTo(buffer.Span);
                    pipe.Input.AdvanceTo(readable.GetPosition(count));
                    return new ValueTask<int>(count);
                }

                pipe.Input.AdvanceTo(readable.End);
            }

            own!.InputDrained();
            _socketReads = own.Stream;
            return own.Stream.ReadAsync(buffer, cancellationToken);
        }

        // Pooled: a read that waits (each message of an otherwise quiet client) would allocate its state each time.
        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        private async ValueTask<int> ReadPipeAsync(Memory<byte> buffer, CancellationToken cancellationToken)
        {
            while (true)
            {
                var result = await pipe.Input.ReadAsync(cancellationToken);
                var readable = result.Buffer;
                if (!readable.IsEmpty)
                {
                    // A zero-byte read waits for data and takes none, as Kestrel's upgraded stream does.
                    var count = (int)Math.Min(readable.Length, buffer.Length);
                    readable.Slice(0, count).CopyTo(buffer.Span);
                    pipe.Input.AdvanceTo(readable.GetPosition(count));
                    return count;
                }

                pipe.Input.AdvanceTo(readable.End);
                if (result.IsCompleted)
                {
                    return 0;
                }

                // Canceled: a CancelPendingRead the HTTP layer made before the switch, not an end of stream.
            }
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count, default).GetAwaiter().GetResult();

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (socket is null)
            {
                var flush = pipe.Output.WriteAsync(buffer, cancellationToken);
                return flush.IsCompletedSuccessfully ? default : AwaitFlushAsync(flush);
            }

            // As through the pipe: bytes for a socket that failed are dropped (the connection was aborted then).
            if (_sendFailed)
            {
                return default;
            }

            var send = SocketSend.SendAsync(socket, buffer, cancellationToken);
            if (send.IsCompletedSuccessfully)
            {
                Sent(send.Result);
                return default;
            }

            return AwaitSendAsync(send);
        }

        private async ValueTask AwaitSendAsync(ValueTask<bool> send) => Sent(await send);

        private void Sent(bool sent)
        {
            if (!sent && !_sendFailed)
            {
                // As Kestrel's send loop does when a send fails: the connection is aborted, so its reads end too
                // (a peer that reset is seen by them anyway; an error of the local stack would not be).
                _sendFailed = true;
                Abort();
            }
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer, offset, count, default).GetAwaiter().GetResult();

        public override Task FlushAsync(CancellationToken cancellationToken) =>
            socket is null ? pipe.Output.FlushAsync(cancellationToken).AsTask() : Task.CompletedTask;

        public override void Flush() => FlushAsync(default).GetAwaiter().GetResult();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public void Abort() => connection.Abort(new ConnectionAbortedException("The WebSocket connection was aborted."));

        protected override void Dispose(bool disposing)
        {
            // The connection has ended and flushed: the socket closes now (its send side after what is queued), not
            // when the middleware returns, after the connection's closed hooks.
            if (disposing && Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                pipe.Input.Complete();
                pipe.Output.Complete();
            }

            base.Dispose(disposing);
        }

        private static async ValueTask AwaitFlushAsync(ValueTask<FlushResult> flush) => await flush;
    }
}
