using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Configuration;

namespace Sluice.LoadTest;

/// <summary>The echo backends and the C# peer proxies the load is measured against.</summary>
internal static class Servers
{
    /// <summary>
    /// A bare System.Net.WebSockets echo loop, written as simply as possible: the backend of every proxy run. With
    /// --deflate it negotiates permessage-deflate and refuses (400) a client that does not offer it, so that a proxy
    /// whose backend leg would not compress fails the run rather than measuring less work.
    /// </summary>
    public static async Task<int> BareEchoAsync(Arguments args)
    {
        var deflate = args.Flag("deflate");
        var app = CreateApp(args.Int("port"));
        app.UseWebSockets();
        app.Run(async context =>
        {
            if (!context.WebSockets.IsWebSocketRequest
                || (deflate && !context.Request.Headers.SecWebSocketExtensions.ToString().Contains("permessage-deflate", StringComparison.OrdinalIgnoreCase)))
            {
                context.Response.StatusCode = 400;
                return;
            }

            using var socket = await context.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext { DangerousEnableCompression = deflate });
            var buffer = new byte[64 * 1024];
            while (true)
            {
                var (length, type) = await socket.ReceiveMessageAsync(buffer);
                if (type == WebSocketMessageType.Close)
                {
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
                    return;
                }

                await socket.SendAsync(buffer.AsMemory(0, length), type, endOfMessage: true, CancellationToken.None);
            }
        });
        await app.RunAsync();
        return 0;
    }

    /// <summary>Sluice host mode: an echo handler, no interceptors.</summary>
    public static async Task<int> SluiceHostEchoAsync(Arguments args)
    {
        var app = CreateApp(args.Int("port"), services => services.AddSluice(), sluice: true);
        app.MapWebSocket("/{**any}", ws => ws.OnMessage((message, _) => message));
        await app.RunAsync();
        return 0;
    }

    /// <summary>Sluice in library mode: MapWebSocketProxy with three no-op interceptors, and no metrics exporter.</summary>
    public static async Task<int> SluiceLibraryProxyAsync(Arguments args)
    {
        var backend = new Uri(args.String("backend"));
        var app = CreateApp(args.Int("port"), services => services.AddSluice(), sluice: true);
        // For memory investigations: a full GC, then what the GC holds against what the process holds.
        app.MapGet("/_gc", () =>
        {
            GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
            var info = GC.GetGCMemoryInfo();
            return new { heapMiB = info.HeapSizeBytes >> 20, committedMiB = info.TotalCommittedBytes >> 20, rssMiB = Environment.WorkingSet >> 20 };
        });
        app.MapWebSocketProxy("/{**rest}", $"ws://{backend.Authority}/${{params.rest}}", proxy =>
        {
            proxy.Use((context, next) => next(context));
            proxy.Use((context, next) => next(context));
            proxy.Use((context, next) => next(context));
        });
        await app.RunAsync();
        return 0;
    }

    /// <summary>YARP as a pass-through WebSocket proxy: one route, one cluster, nothing else.</summary>
    public static async Task<int> YarpAsync(Arguments args)
    {
        var backend = new Uri(args.String("backend"));
        var app = CreateApp(args.Int("port"), services => services.AddReverseProxy().LoadFromMemory(
            [new RouteConfig { RouteId = "all", ClusterId = "backend", Match = new RouteMatch { Path = "/{**any}" } }],
            [new ClusterConfig { ClusterId = "backend", Destinations = new Dictionary<string, DestinationConfig> { ["one"] = new() { Address = $"http://{backend.Authority}" } } }]));
        app.MapReverseProxy();
        await app.RunAsync();
        return 0;
    }

    /// <summary>
    /// What a .NET developer writes by hand: accept, connect ClientWebSocket to the backend, two pump loops, and three
    /// no-op hooks per message (the place interceptors would go).
    /// </summary>
    public static async Task<int> HandWrittenProxyAsync(Arguments args)
    {
        var backend = new Uri(args.String("backend"));
        Func<ReadOnlyMemory<byte>, ValueTask<bool>>[] hooks = [_ => ValueTask.FromResult(true), _ => ValueTask.FromResult(true), _ => ValueTask.FromResult(true)];
        var app = CreateApp(args.Int("port"));
        app.UseWebSockets();
        app.Run(async context =>
        {
            if (!context.WebSockets.IsWebSocketRequest)
            {
                context.Response.StatusCode = 400;
                return;
            }

            using var server = new ClientWebSocket();
            server.Options.KeepAliveInterval = TimeSpan.Zero;
            await server.ConnectAsync(new Uri(backend, context.Request.Path + context.Request.QueryString), context.RequestAborted);
            using var client = await context.WebSockets.AcceptWebSocketAsync();
            await Task.WhenAny(PumpAsync(client, server, hooks), PumpAsync(server, client, hooks));
            client.Abort();
            server.Abort();
        });
        await app.RunAsync();
        return 0;
    }

    private static async Task PumpAsync(WebSocket from, WebSocket to, Func<ReadOnlyMemory<byte>, ValueTask<bool>>[] hooks)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                var (length, type) = await from.ReceiveMessageAsync(buffer);
                if (type == WebSocketMessageType.Close)
                {
                    await to.CloseOutputAsync(from.CloseStatus ?? WebSocketCloseStatus.NormalClosure, from.CloseStatusDescription, CancellationToken.None);
                    return;
                }

                var forward = true;
                foreach (var hook in hooks)
                {
                    forward &= await hook(buffer.AsMemory(0, length));
                }

                if (forward)
                {
                    await to.SendAsync(buffer.AsMemory(0, length), type, endOfMessage: true, CancellationToken.None);
                }
            }
        }
        catch (WebSocketException)
        {
        }
    }

    /// <param name="port">The loopback port.</param>
    /// <param name="services">The app's services.</param>
    /// <param name="sluice">
    /// A Sluice app: its connections leave their upgrade requests (UseWebSocketHandoff), as docs/configuration.md
    /// recommends to an app with many connections and as the gateway does.
    /// </param>
    internal static WebApplication CreateApp(int port, Action<IServiceCollection>? services = null, bool sluice = false)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        if (sluice)
        {
            builder.WebHost.ConfigureKestrel(o => o.ConfigureEndpointDefaults(listen => listen.UseWebSocketHandoff()));
        }

        if (Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") == "1")
        {
            // The gateway's default I/O scheduling, for a peer run with it (bench/run.sh's *-inline peers): socket
            // completions (the variable, read by the runtime) and Kestrel's continuations on the I/O thread.
            builder.WebHost.UseSockets(o => o.UnsafePreferInlineScheduling = true);
        }

        builder.Logging.ClearProviders();
        services?.Invoke(builder.Services);
        return builder.Build();
    }
}
