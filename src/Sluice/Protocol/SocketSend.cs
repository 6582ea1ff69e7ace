using System.Net.Sockets;

namespace Sluice.Protocol;

/// <summary>
/// Sends on a socket in non-blocking mode (<see cref="Socket.Blocking"/> false): first from the caller's thread, then,
/// for what did not fit, awaited. A send the socket's buffer takes at once costs one system call, and leaves the socket
/// without the send arguments (about 360 bytes) that an awaited send caches on it for its lifetime.
/// </summary>
internal static class SocketSend
{
    /// <summary>Sends all of <paramref name="buffer"/>; false when the socket failed or was closed (the bytes are lost, as a peer that reset loses them).</summary>
    public static ValueTask<bool> SendAsync(Socket socket, ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken)
    {
        var sent = TrySend(socket, buffer.Span);
        return sent < 0 ? new ValueTask<bool>(false)
            : sent == buffer.Length ? new ValueTask<bool>(true)
            : SendRestAsync(socket, buffer[sent..], cancellationToken);
    }

    /// <summary>Sends what the socket's buffer takes now: the count, or -1 when the socket failed or was closed.</summary>
    public static int TrySend(Socket socket, ReadOnlySpan<byte> buffer) => TrySend(socket, buffer, out _);

    /// <summary>
    /// Sends what the socket's buffer takes now: the count, or -1 with the socket's <paramref name="error"/>
    /// (<see cref="SocketError.OperationAborted"/> when it was closed).
    /// </summary>
    public static int TrySend(Socket socket, ReadOnlySpan<byte> buffer, out SocketError error)
    {
        try
        {
            var sent = socket.Send(buffer, SocketFlags.None, out error);
            return error is SocketError.Success or SocketError.WouldBlock ? sent : -1;
        }
        catch (ObjectDisposedException)
        {
            error = SocketError.OperationAborted;
            return -1;
        }
    }

    private static async ValueTask<bool> SendRestAsync(Socket socket, ReadOnlyMemory<byte> rest, CancellationToken cancellationToken)
    {
        try
        {
            while (!rest.IsEmpty)
            {
                rest = rest[await socket.SendAsync(rest, SocketFlags.None, cancellationToken)..];
            }

            return true;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }
}
