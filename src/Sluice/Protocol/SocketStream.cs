using System.Net.Sockets;

namespace Sluice.Protocol;

/// <summary>
/// A backend leg's socket: a <see cref="NetworkStream"/> whose writes first try a non-blocking send from the writer's
/// thread and only await what the socket's buffer does not take. A socket whose buffer has room therefore never caches
/// the send arguments an awaited send leaves on it for its lifetime (about 360 bytes, and through them the last buffer
/// sent), which every idle proxied connection would hold. Reads, disposal and the exceptions they throw are
/// NetworkStream's own.
/// </summary>
/// <remarks>Asynchronous writes only: the socket is in non-blocking mode, where a synchronous one could not wait.</remarks>
internal sealed class SocketStream : NetworkStream
{
    /// <param name="socket">A connected socket, which the stream owns; it is switched to non-blocking mode.</param>
    public SocketStream(Socket socket)
        : base(socket, ownsSocket: true)
    {
        // After the base constructor, which refuses a socket already in non-blocking mode.
        socket.Blocking = false;

        // NetworkStream's finalizer does nothing (it closes the socket only when disposed); it would keep every
        // connection's socket objects alive one more collection, and so into an older generation.
        GC.SuppressFinalize(this);
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        var sent = SocketSend.TrySend(Socket, buffer.Span, out var error);
        if (sent < 0)
        {
            var inner = new SocketException((int)error);
            return ValueTask.FromException(new IOException($"Unable to write data to the transport connection: {inner.Message}.", inner));
        }

        // What did not fit is awaited as NetworkStream awaits a write (it then caches the send arguments).
        return sent == buffer.Length ? default : base.WriteAsync(buffer[sent..], cancellationToken);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => throw SynchronousWrite();

    public override void Write(ReadOnlySpan<byte> buffer) => throw SynchronousWrite();

    public override void WriteByte(byte value) => throw SynchronousWrite();

    private static NotSupportedException SynchronousWrite() => new("A backend leg's socket is written asynchronously only.");
}
