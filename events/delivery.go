package events

import (
	"time"

	"github.com/google/uuid"
)

// AggregateDelivery names the delivery context's aggregate: one delivery
// per order, identified by the order's ID.
const AggregateDelivery = "delivery"

// DeliveryCompletedEvent is the payload of delivery.completed: a courier
// handed the order over.
type DeliveryCompletedEvent struct {
	OrderID     string    `json:"order_id"`
	CourierID   string    `json:"courier_id"`
	DeliveredAt time.Time `json:"delivered_at"`
}

// DeliveryEventID derives the ID of a delivery event of an order, so that a
// courier that publishes it again (after a crash, say) publishes the same
// event, which the stream's duplicate window and every inbox drop.
func DeliveryEventID(orderID, eventType string) uuid.UUID {
	return uuid.NewSHA1(eventNamespace, []byte(AggregateDelivery+"/"+orderID+"/"+eventType))
}
