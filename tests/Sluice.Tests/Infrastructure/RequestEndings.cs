using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;

namespace Sluice.Tests.Infrastructure;

/// <summary>
/// Records, by path, when each request ends. A WebSocket's request lasts as long as its connection unless the
/// connection leaves it (<c>UseWebSocketHandoff</c>).
/// </summary>
public sealed class RequestEndings
{
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _ended = new();

    /// <summary>Adds the middleware that records the endings; call it before the endpoints are mapped.</summary>
    public void Track(IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        var path = context.Request.Path.Value!;
        try
        {
            await next(context);
        }
        finally
        {
            For(path).TrySetResult();
        }
    });

    /// <summary>Completes when the request to <paramref name="path"/> has ended.</summary>
    public Task Of(string path) => For(path).Task;

    private TaskCompletionSource For(string path) =>
        _ended.GetOrAdd(path, _ => new(TaskCreationOptions.RunContinuationsAsynchronously));
}
