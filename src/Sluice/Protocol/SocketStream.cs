using System.Net.Sockets;

namespace Sluice.Protocol;

/// <summary>
/// A backend leg's socket as a stream, in place of <see cref="NetworkStream"/>: writes go through
/// <see cref="SocketSend"/>, so a socket whose buffer has room never caches send arguments (an idle proxied
/// connection would hold them, and through them the last buffer sent, for its whole life). Reads are the socket's
/// own.
/// </summary>
internal sealed class SocketStream : Stream
{
    private readonly Socket _socket;

    /// <param name="socket">A connected socket, which the stream owns; it is switched to non-blocking mode.</param>
    public SocketStream(Socket socket)
    {
        _socket = socket;
        socket.Blocking = false;
    }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    // Not wrapped in a method of its own: a pending read (an idle leg's zero-byte read) then holds no state machine.
    // A failed read therefore throws the SocketException itself, which the engine and the handshake's error mapping
    // both take as a transport failure.
    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        _socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var send = SocketSend.SendAsync(_socket, buffer, cancellationToken);
        if (send.IsCompletedSuccessfully)
        {
            return send.Result ? default : ValueTask.FromException(WriteFailed());
        }

        return AwaitWriteAsync(send, cancellationToken);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _socket.Dispose();
        }

        base.Dispose(disposing);
    }

    private static async ValueTask AwaitWriteAsync(ValueTask<bool> send, CancellationToken cancellationToken)
    {
        if (!await send)
        {
            cancellationToken.ThrowIfCancellationRequested();
            throw WriteFailed();
        }
    }

    private static IOException WriteFailed() => new("Unable to write data to the transport connection: the socket failed or was closed.");
}
