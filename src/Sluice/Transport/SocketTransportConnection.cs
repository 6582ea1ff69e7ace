using System.Buffers;
using System.Collections;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Sluice.Protocol;

namespace Sluice.Transport;

/// <summary>
/// One accepted socket. Kestrel reads it through a pipe that a receive loop fills, and writes it through
/// <see cref="SocketPipeWriter"/>, which sends from the writer's thread. <see cref="StopReceivingAsync"/> ends the loop
/// without taking data from the socket: the pipe is drained, then the socket read directly (<see cref="Stream"/>),
/// and the pipe and the loop are gone.
/// </summary>
internal sealed class SocketTransportConnection : ConnectionContext, IDuplexPipe, IFeatureCollection,
    IConnectionIdFeature, IConnectionTransportFeature, IConnectionItemsFeature, IConnectionLifetimeFeature,
    IConnectionEndPointFeature, IConnectionSocketFeature, IMemoryPoolFeature
{
    private static long s_lastId = DateTime.UtcNow.Ticks;

    private readonly Socket _socket;
    private readonly SocketPipeWriter _output;
    private readonly CancellationTokenSource _closed = new();
    private Pipe? _input;
    private CancellationTokenSource? _stopReceiving = new();
    private Task _receiving = Task.CompletedTask;
    private IDuplexPipe _transport;
    private string? _id;
    private IDictionary<object, object?>? _items;
    private List<KeyValuePair<Type, object?>>? _features;
    private int _revision;
    private int _socketClosed;
    private int _closedFired;
    private ConnectionAbortedException? _abortReason;

    public SocketTransportConnection(Socket socket, PipeOptions input)
    {
        _socket = socket;
        _input = new Pipe(input);
        // A send that fails closes the socket, as Kestrel's send loop does: the receive loop then ends, and Kestrel
        // learns of it from the input and ConnectionClosed rather than from responses that vanish.
        _output = new SocketPipeWriter(socket, completed: _ => CloseSocket(), failed: CloseSocket);
        _transport = this;
        LocalEndPoint = socket.LocalEndPoint;
        RemoteEndPoint = socket.RemoteEndPoint;

        // It puts the socket in non-blocking mode: a send from the writer's thread takes what the socket's buffer holds
        // and returns. Asynchronous receives do not see the mode.
        Stream = new SocketStream(socket);
        _receiving = ReceiveAsync();
    }

    /// <summary>The socket as a stream, for reads once <see cref="StopReceivingAsync"/> has been called and the pipe drained.</summary>
    public SocketStream Stream { get; }

    public override string ConnectionId
    {
        get => _id ??= NextId();
        set => _id = value;
    }

    public override IFeatureCollection Features => this;

    public override IDictionary<object, object?> Items
    {
        get => _items ??= new ConnectionItems();
        set => _items = value;
    }

    public override IDuplexPipe Transport
    {
        get => _transport;
        set => _transport = value;
    }

    public override CancellationToken ConnectionClosed
    {
        get => _closed.Token;
        set => throw new NotSupportedException();
    }

    /// <summary>The pipe Kestrel reads; once drained after <see cref="StopReceivingAsync"/>, a completed one.</summary>
    PipeReader IDuplexPipe.Input => _input?.Reader ?? CompletedReader.Instance;

    PipeWriter IDuplexPipe.Output => _output;

    Socket IConnectionSocketFeature.Socket => _socket;

    MemoryPool<byte> IMemoryPoolFeature.MemoryPool => MemoryPool<byte>.Shared;

    /// <summary>
    /// Ends the receive loop without taking data from the socket; completes when it has ended. What it received stays
    /// in the pipe, which is then complete: the caller reads it to its end, calls <see cref="InputDrained"/>, and then
    /// reads <see cref="Stream"/>.
    /// </summary>
    public Task StopReceivingAsync()
    {
        var loop = _receiving;
        if (Interlocked.Exchange(ref _stopReceiving, null) is { } stop)
        {
            // The loop waits for data with this token: canceling the wait leaves the socket as it was. A loop held by a
            // full pipe (a client that sent a megabyte before its 101) stops too, its data still in the pipe.
            stop.Cancel();
            _input?.Writer.CancelPendingFlush();
        }

        return loop;
    }

    /// <summary>Whether the pipe and the receive loop are gone (<see cref="InputDrained"/> has been called).</summary>
    public bool InputReleased => Volatile.Read(ref _input) is null;

    /// <summary>The pipe has been read to its end after <see cref="StopReceivingAsync"/>: it is released.</summary>
    public void InputDrained()
    {
        if (Interlocked.Exchange(ref _input, null) is { } input)
        {
            input.Reader.Complete();
        }
    }

    public override void Abort(ConnectionAbortedException abortReason)
    {
        // Pending receives and sends fail, and with them the loop and the leg's reads; a read of the request's body then
        // fails with this reason rather than seeing the body end.
        Interlocked.CompareExchange(ref _abortReason, abortReason, null);
        CloseSocket();
        FireClosed();
    }

    public override async ValueTask DisposeAsync()
    {
        _output.Complete();
        _input?.Reader.Complete();
        CloseSocket();
        await _receiving;
        if (Interlocked.Exchange(ref _closedFired, 1) == 0)
        {
            // Here, not queued: as with Kestrel's transport, the token's callbacks have run when the connection is disposed.
            _closed.Cancel();
        }

        await base.DisposeAsync();
    }

    private async Task ReceiveAsync()
    {
        var input = _input!.Writer;
        var stop = _stopReceiving!;
        Exception? error = null;
        var stopped = false;
        try
        {
            while (true)
            {
                try
                {
                    // Wait for data before taking a buffer: an idle connection holds none, and a stop can end the wait
                    // without consuming anything.
                    await _socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, stop.Token);
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    stopped = true;
                    break;
                }

                if (stop.IsCancellationRequested)
                {
                    // Data has arrived after the stop: it stays in the socket for its next reader.
                    stopped = true;
                    break;
                }

                var received = await _socket.ReceiveAsync(input.GetMemory(), SocketFlags.None);
                if (received == 0)
                {
                    break;
                }

                input.Advance(received);
                var flush = await input.FlushAsync();
                if (flush.IsCompleted || flush.IsCanceled)
                {
                    stopped = stop.IsCancellationRequested;
                    break;
                }
            }
        }
        catch (SocketException ex) when (IsReset(ex.SocketErrorCode))
        {
            error = new ConnectionResetException(ex.Message, ex);
        }
        catch (Exception ex) when (ex is ObjectDisposedException
            || ex is SocketException { SocketErrorCode: SocketError.OperationAborted or SocketError.Interrupted or SocketError.InvalidArgument })
        {
            // InvalidArgument: a receive that raced the socket's disposal on Linux.
            error = new ConnectionAbortedException("The connection was aborted.", ex);
        }
        catch (Exception ex)
        {
            error = ex;
        }
        finally
        {
            Interlocked.Exchange(ref _stopReceiving, null)?.Dispose();
        }

        if (Volatile.Read(ref _socketClosed) != 0 && !stopped)
        {
            // Closed here (an abort, a failed send): what ended the loop, however it showed, is that, not the peer's end.
            error = _abortReason ?? error as ConnectionAbortedException
                ?? (error is null ? new ConnectionAbortedException("The connection was aborted.") : new ConnectionAbortedException("The connection was aborted.", error));
        }

        input.Complete(error);
        // The loop's state is not kept for the connection's life.
        _receiving = Task.CompletedTask;
        if (!stopped)
        {
            FireClosed();
        }
    }

    private static bool IsReset(SocketError error) =>
        error is SocketError.ConnectionReset or SocketError.Shutdown or SocketError.ConnectionAborted;

    private void CloseSocket()
    {
        if (Interlocked.Exchange(ref _socketClosed, 1) != 0)
        {
            return;
        }

        try
        {
            // As Kestrel's transport: the peer sees an orderly end after what was sent, rather than a reset.
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }

        _socket.Dispose();
    }

    private void FireClosed()
    {
        if (Interlocked.Exchange(ref _closedFired, 1) == 0)
        {
            // Off this thread: the token's callbacks (Kestrel's request abort) must not run inside a socket completion.
            ThreadPool.UnsafeQueueUserWorkItem(static cts => cts.Cancel(), _closed, preferLocal: false);
        }
    }

    private static string NextId()
    {
        // Thirteen characters of base 32, as Kestrel's connection ids.
        const string Digits = "0123456789ABCDEFGHIJKLMNOPQRSTUV";
        var id = Interlocked.Increment(ref s_lastId);
        return string.Create(13, id, static (span, value) =>
        {
            for (var i = span.Length - 1; i >= 0; i--)
            {
                span[i] = Digits[(int)(value & 31)];
                value >>= 5;
            }
        });
    }

    // The features: this connection's own, unless set otherwise; others in a list made on the first one set.
    bool IFeatureCollection.IsReadOnly => false;

    int IFeatureCollection.Revision => _revision;

    object? IFeatureCollection.this[Type key]
    {
        get
        {
            if (_features is not null)
            {
                foreach (var (type, feature) in _features)
                {
                    if (type == key)
                    {
                        return feature;
                    }
                }
            }

            return IsOwn(key) ? this : null;
        }
        set
        {
            _revision++;
            _features ??= new List<KeyValuePair<Type, object?>>(4);
            for (var i = 0; i < _features.Count; i++)
            {
                if (_features[i].Key == key)
                {
                    if (value is null && !IsOwn(key))
                    {
                        _features.RemoveAt(i);
                    }
                    else
                    {
                        _features[i] = new(key, value);
                    }

                    return;
                }
            }

            // A null stays only to hide one of this connection's own features.
            if (value is not null || IsOwn(key))
            {
                _features.Add(new(key, value));
            }
        }
    }

    TFeature? IFeatureCollection.Get<TFeature>() where TFeature : default => (TFeature?)((IFeatureCollection)this)[typeof(TFeature)];

    void IFeatureCollection.Set<TFeature>(TFeature? instance) where TFeature : default => ((IFeatureCollection)this)[typeof(TFeature)] = instance;

    IEnumerator<KeyValuePair<Type, object>> IEnumerable<KeyValuePair<Type, object>>.GetEnumerator()
    {
        var features = (IFeatureCollection)this;
        foreach (var type in s_own)
        {
            if (features[type] is { } feature)
            {
                yield return new(type, feature);
            }
        }

        if (_features is not null)
        {
            foreach (var (type, feature) in _features.ToArray())
            {
                if (feature is not null && !IsOwn(type))
                {
                    yield return new(type, feature);
                }
            }
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => ((IEnumerable<KeyValuePair<Type, object>>)this).GetEnumerator();

    private static readonly Type[] s_own =
    [
        typeof(IConnectionIdFeature), typeof(IConnectionTransportFeature), typeof(IConnectionItemsFeature),
        typeof(IConnectionLifetimeFeature), typeof(IConnectionEndPointFeature), typeof(IConnectionSocketFeature),
        typeof(IMemoryPoolFeature),
    ];

    private static bool IsOwn(Type key) => Array.IndexOf(s_own, key) >= 0;

    private sealed class ConnectionItems : Dictionary<object, object?>;

    /// <summary>The input after it has been released: completed, and nothing to read.</summary>
    private sealed class CompletedReader : PipeReader
    {
        public static readonly CompletedReader Instance = new();

        public override bool TryRead(out ReadResult result)
        {
            result = new ReadResult(ReadOnlySequence<byte>.Empty, isCanceled: false, isCompleted: true);
            return true;
        }

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default) =>
            new(new ReadResult(ReadOnlySequence<byte>.Empty, isCanceled: false, isCompleted: true));

        public override void AdvanceTo(SequencePosition consumed)
        {
        }

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
        }

        public override void CancelPendingRead()
        {
        }

        public override void Complete(Exception? exception = null)
        {
        }
    }
}
