using System.Text.Json;

namespace Sluice;

/// <summary>
/// Turns an application's own result type into a message, for host-mode handlers that return it. Register
/// implementations with <c>AddSluice().AddResultConverter&lt;T&gt;()</c>; they apply to every endpoint.
/// </summary>
public interface IWebSocketResultConverter
{
    /// <summary>Converts <paramref name="result"/> if this converter knows its type.</summary>
    bool TryConvert(object result, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out WebSocketMessage? message);
}

/// <summary>The conversions of a handler's result, in order: the endpoint's, the app's, the built-ins, JSON.</summary>
internal sealed class ResultConversion(
    IReadOnlyList<Func<object, WebSocketMessage?>> endpointConverters,
    IReadOnlyList<IWebSocketResultConverter> appConverters,
    JsonSerializerOptions jsonOptions)
{
    public WebSocketMessage Convert(object result)
    {
        foreach (var converter in endpointConverters)
        {
            if (converter(result) is { } converted)
            {
                return converted;
            }
        }

        foreach (var converter in appConverters)
        {
            if (converter.TryConvert(result, out var converted))
            {
                return converted;
            }
        }

        return result switch
        {
            WebSocketMessage message => message,
            string text => WebSocketMessage.FromText(text),
            byte[] bytes => WebSocketMessage.FromBinary(bytes),
            ReadOnlyMemory<byte> memory => WebSocketMessage.FromBinary(memory),
            Memory<byte> memory => WebSocketMessage.FromBinary(memory),
            ArraySegment<byte> segment => WebSocketMessage.FromBinary(segment),
            _ => WebSocketMessage.FromText(JsonSerializer.SerializeToUtf8Bytes(result, jsonOptions.GetTypeInfo(result.GetType()))),
        };
    }
}
