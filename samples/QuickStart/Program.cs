// Sluice quick start: a hosted chat endpoint with a class interceptor, lambdas, a route group and a
// per-connection feature. Run it with `dotnet run --project samples/QuickStart` and connect any WebSocket
// client to ws://127.0.0.1:5000/chat/lobby?user=ann.
using System.Diagnostics;
using System.Net.WebSockets;
using Sluice;

var builder = WebApplication.CreateBuilder(args);
builder.WebHost.UseUrls("http://127.0.0.1:5000");
builder.Services.AddSluice();
builder.Services.AddSingleton<AuditInterceptor>();

var app = builder.Build();

// A group whose interceptors and upgrade steps apply to every WebSocket endpoint inside it.
var chat = app.MapGroup("/chat").WithWebSocketPipeline(pipeline =>
{
    // Upgrade step: runs on the HTTP request, before any WebSocket exists.
    pipeline.UseUpgrade(ctx => ctx.HttpContext.Request.Query["user"] is { Count: 1 } user
        ? UpgradeResult.Continue(user.ToString())
        : UpgradeResult.Reject(401, "add ?user=NAME"));
    pipeline.Use<AuditInterceptor>();
});

chat.MapWebSocket("/{room}", ws =>
{
    // A per-connection feature, created on first use.
    ws.AddFeature(connection => new ChatSession((string)connection.UpgradeData!));

    // A lambda that drops messages (return null) and transforms others.
    ws.Inbound(message => message.Text.StartsWith('/') ? null : WebSocketMessage.FromText(message.Text.Trim()));

    // An outbound middleware with logic after next: how long the handler and chain took.
    ws.Use(async (context, next) =>
    {
        var started = Stopwatch.GetTimestamp();
        await next(context);
        context.Connection.Feature<ChatSession>().LastReplyTime = Stopwatch.GetElapsedTime(started);
    }).OutboundOnly();

    ws.OnConnected(connection => connection.SendAsync($"welcome, {connection.Feature<ChatSession>().User}"));

    // What the handler returns goes back through the outbound chain: strings as text, objects as JSON.
    ws.OnMessage((message, connection) =>
    {
        var session = connection.Feature<ChatSession>();
        session.Count++;
        return new { from = session.User, room = connection.RouteValues["room"], text = message.Text, n = session.Count };
    });
});

app.Run();

/// <summary>Per-connection state: a feature of the connection.</summary>
internal sealed class ChatSession(string user)
{
    public string User { get; } = user;

    public int Count { get; set; }

    public TimeSpan LastReplyTime { get; set; }
}

/// <summary>A class interceptor: sees both directions, with logic before and after next.</summary>
internal sealed partial class AuditInterceptor(ILogger<AuditInterceptor> logger) : IMessageInterceptor
{
    public async ValueTask InboundAsync(MessageContext context, MessageDelegate next)
    {
        if (context.Message.Length > 4096)
        {
            context.Close(WebSocketCloseStatus.MessageTooBig, "chat messages are short");
            return;
        }

        await next(context);
        Log.Inbound(logger, context.Connection.Id, context.Message.Length, context.Outcome);
    }

    public ValueTask OutboundAsync(MessageContext context, MessageDelegate next) => next(context);

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Connection {ConnectionId}: {Length} bytes in, {Outcome}.")]
        public static partial void Inbound(ILogger logger, string connectionId, int length, MessageOutcome outcome);
    }
}
