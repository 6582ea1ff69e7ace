using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Sluice.Transport;

/// <summary>
/// Kestrel's transport for TCP endpoints, in place of its socket transport: the same listening sockets and options
/// (<see cref="SocketTransportOptions"/>), but a connection whose WebSocket leaves its request
/// (<see cref="UpgradeHandoff"/>) can stop the transport's receive loop and read its socket itself, so that an open
/// WebSocket holds neither the transport's pipes nor its loops.
/// </summary>
internal sealed class SocketTransportFactory(IOptions<SocketTransportOptions> options, ILoggerFactory loggerFactory)
    : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    private readonly ILogger _logger = loggerFactory.CreateLogger("Sluice.Transport");

    // Unix domain sockets and file handles stay with Kestrel's socket transport.
    public bool CanBind(EndPoint endpoint) => endpoint is IPEndPoint;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        var settings = options.Value;
        Socket socket;
        try
        {
            socket = settings.CreateBoundListenSocket(endpoint);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            // What Kestrel's binder expects of a transport: it reports the address, and for localhost tries the other
            // loopback address only on this.
            throw new AddressInUseException(ex.Message, ex);
        }

        try
        {
            socket.Listen(settings.Backlog);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var scheduler = settings.UnsafePreferInlineScheduling ? PipeScheduler.Inline : PipeScheduler.ThreadPool;
        var maxRead = settings.MaxReadBufferSize ?? 0;
        var input = new PipeOptions(
            readerScheduler: scheduler,
            writerScheduler: PipeScheduler.Inline,
            pauseWriterThreshold: maxRead,
            resumeWriterThreshold: maxRead / 2,
            minimumSegmentSize: 4096,
            useSynchronizationContext: false);
        return new ValueTask<IConnectionListener>(new Listener(socket, settings.NoDelay, input, _logger));
    }

    private sealed class Listener(Socket socket, bool noDelay, PipeOptions input, ILogger logger) : IConnectionListener
    {
        private static readonly TimeSpan AcceptRetryDelay = TimeSpan.FromMilliseconds(20);

        public EndPoint EndPoint { get; } = socket.LocalEndPoint!;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            while (true)
            {
                Socket accepted;
                try
                {
                    accepted = await socket.AcceptAsync(cancellationToken);
                }
                catch (Exception ex) when (ex is ObjectDisposedException
                    || ex is SocketException { SocketErrorCode: SocketError.OperationAborted })
                {
                    // Unbound.
                    return null;
                }
                catch (SocketException ex)
                {
                    // A connection that reset before it was accepted, or no descriptor left for it: the listener goes on,
                    // as Kestrel's does.
                    TransportLog.AcceptFailed(logger, ex);
                    if (ex.SocketErrorCode is SocketError.TooManyOpenSockets or SocketError.NoBufferSpaceAvailable)
                    {
                        // Out of descriptors or buffers: retrying at once would spin a core until one is freed, while
                        // the kernel's backlog holds the waiting connections anyway. An unbind during the pause ends the
                        // next accept.
                        await Task.Delay(AcceptRetryDelay, CancellationToken.None);
                    }

                    continue;
                }

                try
                {
                    accepted.NoDelay = noDelay;
                    return new SocketTransportConnection(accepted, input);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    // Reset between the accept and here. Nothing may escape: Kestrel would stop accepting on this endpoint.
                    TransportLog.AcceptFailed(logger, ex);
                    accepted.Dispose();
                }
            }
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            socket.Dispose();
            return default;
        }

        public ValueTask DisposeAsync()
        {
            socket.Dispose();
            return default;
        }
    }
}

internal static partial class TransportLog
{
    [LoggerMessage(EventId = 150, Level = LogLevel.Debug, Message = "A connection failed before it was accepted.")]
    public static partial void AcceptFailed(ILogger logger, Exception exception);
}
