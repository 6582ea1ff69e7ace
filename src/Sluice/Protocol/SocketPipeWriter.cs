using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;

namespace Sluice.Protocol;

/// <summary>
/// A pipe writer that buffers between flushes and sends each flush itself, from the flushing thread, on a socket in
/// non-blocking mode (<see cref="SocketSend"/>). It holds no buffer between flushes, so an idle connection holds none.
/// </summary>
/// <remarks>
/// One writer at a time, as a pipe's writer: memory is asked for only between flushes. A send that fails completes
/// the writer (the flush reports it completed); what a later flush holds is dropped, as a peer that reset loses it.
/// </remarks>
/// <param name="socket">The socket, in non-blocking mode.</param>
/// <param name="completed">Called once, when the writer is completed.</param>
/// <param name="failed">Called once, when a send fails.</param>
internal sealed class SocketPipeWriter(Socket socket, Action<Exception?>? completed = null, Action? failed = null) : PipeWriter
{
    private byte[]? _buffer;
    private int _buffered;
    private bool _sendFailed;
    private volatile bool _sending;
    private int _completed;

    public override bool CanGetUnflushedBytes => true;

    public override long UnflushedBytes => _buffered;

    public override Memory<byte> GetMemory(int sizeHint = 0) => Reserve(sizeHint).AsMemory(_buffered);

    public override Span<byte> GetSpan(int sizeHint = 0) => Reserve(sizeHint).AsSpan(_buffered);

    public override void Advance(int bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        if (_buffer is null || bytes > _buffer.Length - _buffered)
        {
            throw new InvalidOperationException("Advanced past the memory that was handed out.");
        }

        _buffered += bytes;
    }

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        if (_buffered == 0 || _sendFailed)
        {
            ReturnBuffer();
            return new ValueTask<FlushResult>(new FlushResult(isCanceled: false, isCompleted: _sendFailed));
        }

        // The caller gets no memory while a flush is pending, so the buffer holds still until it ends. The flush's
        // token is not passed on: a send canceled halfway could be neither finished nor undone, and Kestrel ends a
        // stuck flush by aborting the connection, which fails the send.
        _sending = true;
        var send = SocketSend.SendAsync(socket, _buffer.AsMemory(0, _buffered), CancellationToken.None);
        return send.IsCompletedSuccessfully ? new ValueTask<FlushResult>(Flushed(send.Result)) : AwaitFlushAsync(send);
    }

    // A flush is never left waiting on the writer's side: it waits on the socket, which an abort fails.
    public override void CancelPendingFlush()
    {
    }

    public override void Complete(Exception? exception = null)
    {
        if (Interlocked.Exchange(ref _completed, 1) != 0)
        {
            return;
        }

        if (_sending)
        {
            // Completed (an abort) while a send still reads the buffer: the buffer is left to the collector, not
            // handed to another renter under that send.
            _buffer = null;
        }
        else
        {
            if (_buffered > 0 && !_sendFailed)
            {
                // What a pipe's writer completes with is still read; here it gets one attempt that does not wait.
                SocketSend.TrySend(socket, _buffer.AsSpan(0, _buffered));
            }

            ReturnBuffer();
        }

        completed?.Invoke(exception);
    }

    private FlushResult Flushed(bool sent)
    {
        if (!sent && !_sendFailed)
        {
            _sendFailed = true;
            failed?.Invoke();
        }

        ReturnBuffer();
        _sending = false;
        return new FlushResult(isCanceled: false, isCompleted: _sendFailed);
    }

    private async ValueTask<FlushResult> AwaitFlushAsync(ValueTask<bool> send)
    {
        var sent = false;
        try
        {
            sent = await send;
        }
        finally
        {
            // Also when the send threw: the buffer is free again, and the writer has failed.
            Flushed(sent);
        }

        return new FlushResult(isCanceled: false, isCompleted: _sendFailed);
    }

    private byte[] Reserve(int sizeHint)
    {
        if (_sending)
        {
            throw new InvalidOperationException("Memory was asked for while a flush was pending.");
        }

        var needed = _buffered + Math.Max(sizeHint, 1);
        if (_buffer is null || needed > _buffer.Length)
        {
            var larger = ArrayPool<byte>.Shared.Rent(Math.Max(needed, Math.Max(4096, (_buffer?.Length ?? 0) * 2)));
            if (_buffer is not null)
            {
                _buffer.AsSpan(0, _buffered).CopyTo(larger);
                ArrayPool<byte>.Shared.Return(_buffer);
            }

            _buffer = larger;
        }

        return _buffer;
    }

    private void ReturnBuffer()
    {
        _buffered = 0;
        if (Interlocked.Exchange(ref _buffer, null) is { } buffer)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
