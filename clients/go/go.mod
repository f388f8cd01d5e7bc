module fleetd/clients/go

go 1.19
